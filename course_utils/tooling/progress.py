"""``course-progress``: which exercises of your copy of the course pass, fail or wait, and what to do next.

Like rustlings: it runs every notebook of your copy (``my-notebooks/``) headless, each in its own kernel,
reads what each check cell printed, and prints one line per exercise and the next one to do::

    course-progress                 # copy new course notebooks into my-notebooks/, then run and report
    course-progress 01 03           # only these notebooks (nothing is copied)
    course-progress --copy-only     # only the copy (`make lab` runs this before opening JupyterLab)

In a notebook: ``from course_utils.tooling.progress import show_progress; show_progress()``.

A check cell that raised ``CheckFailed`` "not implemented yet" is *not started*, any other error is
*failing* (with its one-line message), a ``✔`` line is *passed*. A notebook whose code cells are still
exactly the released ones is reported *not started* without running it. Notebooks run with errors
allowed (every check runs, like nbval/nbconvert with ``--allow-errors``), with a time budget per notebook.

The notebooks run with your own rights, without a sandbox: a folder laid out like a class's submissions
(``SUBMISSIONS/<student>/NN_name.ipynb``) is refused unless ``--trust-this-code`` is given; grade
submissions with ``course-grade`` (``untrusted``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from course_utils.tooling.course_folders import course_folder, require_folder
from course_utils.tooling.untrusted import (
    parser_without_sandbox,
    refuse_submissions,
)

PASSED, FAILING, NOT_STARTED, NOT_RUN = "passed", "failing", "not started", "not run"
MARKS = {PASSED: "✔", FAILING: "✘", NOT_STARTED: "·", NOT_RUN: "?"}
NOT_IMPLEMENTED = "not implemented yet"
NOTEBOOK_NAMES = "[0-9][0-9]_*.ipynb"
# Set in the kernels course-progress starts, so a show_progress() inside a notebook does not recurse.
RUNNING = "COURSE_PROGRESS_RUNNING"
# Each notebook runs in <= 90 s on a 2-core CPU; twice that allows a slower laptop, and stops an endless loop.
DEFAULT_TIMEOUT = 180.0
CHECK_CALL = re.compile(r"""check\(\s*["'](?P<name>\w+)["']""")


@dataclass(frozen=True)
class ExerciseState:
    notebook: str
    exercise: str
    status: str
    message: str = ""


def copy_new_notebooks(course: Path, copy: Path) -> list[Path]:
    """Copy each course notebook that ``copy`` lacks; never touch one that is there. Returns the copies."""
    copy.mkdir(parents=True, exist_ok=True)
    copied = []
    for notebook in sorted(course.glob(NOTEBOOK_NAMES)):
        target = copy / notebook.name
        if not target.exists():
            shutil.copy2(notebook, target)
            copied.append(target)
    return copied


def _is_check_cell(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {}) or {}
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def _exercise_name(cell) -> str:
    call = CHECK_CALL.search(cell.source)
    if call:
        return call["name"]
    return cell.metadata["nbgrader"].get("grade_id", "?").removesuffix("_check")


def check_cells(notebook) -> list:
    return [cell for cell in notebook.cells if _is_check_cell(cell)]


def _one_line(text: str) -> str:
    """The whole message on one line (never cut: its end names the mistake and the hint)."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())


def state_of_check(notebook: str, cell) -> ExerciseState:
    """What an executed check cell says about its exercise."""
    name = _exercise_name(cell)
    if cell.get("execution_count") is None:
        return ExerciseState(notebook, name, NOT_RUN, "the notebook stopped before this check")
    for output in cell.outputs:
        if output.output_type == "error":
            message = output.evalue.removeprefix(f"{name}: ")
            if output.ename == "CheckFailed" and NOT_IMPLEMENTED in message:
                return ExerciseState(notebook, name, NOT_STARTED)
            if output.ename != "CheckFailed":
                message = f"{output.ename}: {message}"
            return ExerciseState(notebook, name, FAILING, _one_line(message))
    printed = "".join(output.get("text", "") for output in cell.outputs)
    if "✔" in printed:
        return ExerciseState(notebook, name, PASSED)
    return ExerciseState(notebook, name, FAILING, "the check printed no ✔ line")


def _code_sources(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def is_untouched(notebook, released_path: Path | None) -> bool:
    """True when every code cell is still the released one (so every exercise is not started)."""
    if released_path is None or not released_path.is_file():
        return False
    released = nbformat.read(released_path, as_version=4)
    return _code_sources(notebook) == _code_sources(released)


def _current_env_kernel():
    """A kernel manager for this Python (not whatever a user-level 'python3' kernelspec points at)."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class CurrentEnvironment(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())

    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=CurrentEnvironment())


def run_notebook(path: Path, timeout: float):
    """Execute ``path`` in a fresh kernel, errors allowed; returns (notebook, why it stopped early or "")."""
    try:
        from nbclient import NotebookClient
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        kernel = _current_env_kernel()
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"course-progress runs notebooks with nbclient and ipykernel ({error.name} is missing): "
            "pip install 'course_utils[lab]'"
        ) from None
    notebook = nbformat.read(path, as_version=4)
    deadline = time.monotonic() + timeout
    client = NotebookClient(
        notebook,
        km=kernel,
        allow_errors=True,
        timeout_func=lambda cell: max(1.0, deadline - time.monotonic()),
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        # The kernel's own log (a TCP warning) is noise here; cell output comes over the protocol.
        client.execute(env={**os.environ, RUNNING: "1"}, stderr=subprocess.DEVNULL)
    except CellTimeoutError:
        return notebook, f"stopped after the {timeout:.0f} s budget for one notebook (--timeout)"
    except DeadKernelError:
        return notebook, "the kernel died (out of memory?)"
    return notebook, ""


def notebook_progress(path: Path, released: Path | None, timeout: float) -> list[ExerciseState]:
    """The state of each exercise of one notebook of the learner's copy."""
    try:
        notebook = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as error:  # nbformat's NotJSONError is a ValueError
        return [ExerciseState(path.stem, "(whole notebook)", FAILING, f"cannot read it: {error}")]
    if is_untouched(notebook, released):
        return [
            ExerciseState(path.stem, _exercise_name(c), NOT_STARTED) for c in check_cells(notebook)
        ]
    started = time.monotonic()
    print(f"running {path.name} …", end=" ", flush=True)
    executed, stopped = run_notebook(path, timeout)
    print(f"{time.monotonic() - started:.0f} s" + (f" ({stopped})" if stopped else ""), flush=True)
    states = [state_of_check(path.stem, cell) for cell in check_cells(executed)]
    if stopped:
        states = [
            ExerciseState(s.notebook, s.exercise, s.status, stopped) if s.status == NOT_RUN else s
            for s in states
        ]
    return states


def next_exercise(states: list[ExerciseState]) -> ExerciseState | None:
    return next((state for state in states if state.status != PASSED), None)


def format_report(states: list[ExerciseState], copy: Path) -> str:
    if not states:
        return f"no exercises found in {copy}"
    notebook_width = max(len(state.notebook) for state in states)
    exercise_width = max(len(state.exercise) for state in states)
    lines = [f"{'notebook':<{notebook_width}}  {'exercise':<{exercise_width}}  status"]
    for state in states:
        status = f"{MARKS[state.status]} {state.status}" + (
            f": {state.message}" if state.message else ""
        )
        lines.append(
            f"{state.notebook:<{notebook_width}}  {state.exercise:<{exercise_width}}  {status}"
        )
    counts = {status: sum(s.status == status for s in states) for status in MARKS}
    lines.append("")
    lines.append(
        f"{counts[PASSED]}/{len(states)} exercises passed, {counts[FAILING]} failing, "
        f"{counts[NOT_STARTED]} not started"
        + (f", {counts[NOT_RUN]} not run" if counts[NOT_RUN] else "")
    )
    upcoming = next_exercise(states)
    if upcoming is None:
        lines.append("Every exercise passes. Well done!")
    else:
        where = copy / f"{upcoming.notebook}.ipynb"
        lines.append(f"Next: {upcoming.exercise} in {where} ({upcoming.status})")
    return "\n".join(lines)


def select_notebooks(copy: Path, requested: list[str]) -> list[Path]:
    available = sorted(copy.glob(NOTEBOOK_NAMES))
    if not requested:
        return available
    chosen = []
    for token in requested:
        matches = [p for p in available if token in (p.stem, p.name, p.stem.split("_", 1)[0])]
        if not matches:
            known = ", ".join(p.stem for p in available) or "none"
            raise ValueError(
                f"notebook {token!r}: expected one of {known} (in {copy}), got no match "
                "(course-progress --copy-only copies the course's notebooks you do not have yet)"
            )
        chosen += [match for match in matches if match not in chosen]
    return chosen


def progress(
    copy: Path,
    course: Path | None = None,
    notebooks: list[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
    trust_this_code: bool = False,
) -> list[ExerciseState]:
    """Run the learner's ``copy`` (``course``: the released notebooks, to skip untouched ones).

    The notebooks run with the caller's rights, without a sandbox, so a ``copy`` laid out like a
    class's submissions raises ``UntrustedFolder`` unless ``trust_this_code``."""
    require_folder(copy, "--copy", "your folder of course notebooks (NN_name.ipynb)")
    if not trust_this_code:
        refuse_submissions(copy, "--copy", "course-progress")
    states = []
    for path in select_notebooks(copy, list(notebooks)):
        released = course / path.name if course is not None else None
        states += notebook_progress(path, released, timeout)
    return states


def learner_folder() -> Path:
    """``my-notebooks/`` here or in the checkout; else the current directory when it holds the notebooks."""
    folder = course_folder("my-notebooks")
    if not folder.is_dir() and any(Path.cwd().glob(NOTEBOOK_NAMES)):
        return Path.cwd()
    return folder


def show_progress(
    copy: Path | str | None = None, timeout: float = DEFAULT_TIMEOUT
) -> list[ExerciseState]:
    """Print the progress table from inside a notebook (runs the other notebooks in their own kernels)."""
    if os.environ.get(RUNNING):
        print("show_progress() is skipped while course-progress runs this notebook")
        return []
    copy = Path(copy) if copy is not None else learner_folder()
    course = course_folder("notebooks")
    states = progress(copy, course if course.resolve() != copy.resolve() else None, timeout=timeout)
    print(format_report(states, copy))
    return states


def main(argv: list[str] | None = None) -> int:
    parser = parser_without_sandbox("course-progress", __doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run: 01 or 01_soft_weights")
    parser.add_argument(
        "--copy", type=Path, default=None, help="your copy of the course (default: my-notebooks/)"
    )
    parser.add_argument(
        "--course",
        type=Path,
        default=None,
        help="the released notebooks new ones are copied from (default: notebooks/)",
    )
    parser.add_argument("--copy-only", action="store_true", help="copy new notebooks; run nothing")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds one notebook may run (default {DEFAULT_TIMEOUT:.0f})",
    )
    args = parser.parse_args(argv)
    copy = args.copy or learner_folder()
    course = args.course or course_folder("notebooks")
    try:
        if not args.trust_this_code:  # before copying anything into it
            refuse_submissions(copy, "--copy", "course-progress")
        if args.course is not None or args.copy_only:
            require_folder(course, "--course", "the released notebooks (NN_name.ipynb)")
        if not course.is_dir() or course.resolve() == copy.resolve():
            course = None  # nothing to copy from, and nothing to tell untouched notebooks by
        elif args.notebooks and not args.copy_only:
            pass  # asked about some notebooks: report those, copy nothing into the folder
        else:
            copied = copy_new_notebooks(course, copy)
            for path in copied:
                print(f"copied {course.name}/{path.name} -> {copy}/ (new in the course)")
            if args.copy_only and not copied:
                print(f"{copy}/ has every course notebook (yours are never overwritten)")
        if args.copy_only:
            return 0
        states = progress(copy, course, args.notebooks, args.timeout, args.trust_this_code)
    except (FileNotFoundError, ValueError) as error:
        print(f"course-progress: error: {error}", file=sys.stderr)
        return 2
    print(format_report(states, copy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
