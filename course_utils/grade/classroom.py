"""Grading a whole class: one sandbox and launcher, every (student, notebook) in parallel.

``grade_class`` picks the sandbox (hiding the given paths from the children), starts the launcher
with the modules the released setups import preloaded, grades every task on ``jobs`` threads with a
progress bar, and on Ctrl-C stops every child and starts no new one.
"""

from __future__ import annotations

import ast
import os
import pkgutil
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from course_utils import exercises
from course_utils.feedback.shortcuts import SPEC_PACKAGE
from course_utils.grade import seccomp
from course_utils.grade.results import NotebookResult, Row
from course_utils.grade.runner import Settings, grade_notebook
from course_utils.grade.sandbox import Launcher, Limits, choose_sandbox


@dataclass(frozen=True)
class ClassRun:
    """What a class run produced, besides the rows: how it ran."""

    results: list[NotebookResult]
    sandbox_mode: str
    preloaded_interpreter: bool
    warnings: list[str]


def _matplotlib_fontlist() -> dict | None:
    """The parent's matplotlib font cache, handed to children so they do not rebuild it."""
    try:
        import matplotlib
        from matplotlib import font_manager

        path = (
            Path(matplotlib.get_cachedir())
            / f"fontlist-v{font_manager.FontManager.__version__}.json"
        )
        return {"name": path.name, "text": path.read_text(encoding="utf-8")}
    except Exception:  # noqa: BLE001 - only a speed-up
        return None


def _preload_modules(notebooks) -> list[str]:
    """Modules a zygote imports once: those the setup cells import, and the child's own."""
    modules = ["numpy", "torch", "course_utils.feedback.run", "course_utils.grade.seccomp"]
    # every spec module: the child marks their functions as forbidden (feedback/shortcuts.py)
    modules += [f"{SPEC_PACKAGE}.{info.name}" for info in pkgutil.iter_modules(exercises.__path__)]
    for released in notebooks:
        for node in ast.walk(ast.parse(released.setup_source)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            modules += [name for name in names if name not in modules]
    return modules


def _process_limit() -> int | None:
    """RLIMIT_NPROC for children: this user's current tasks plus headroom (root: not enforced)."""
    if os.getuid() == 0:
        return None
    tasks = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
            )
            if int(fields["Uid"].split()[0]) == os.getuid():
                tasks += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return tasks + 512


def grade_class(students, names, prepared, options, hidden: list[Path]) -> ClassRun:
    """Grade every (student, notebook); ``options`` has sandbox, spawn, memory_mb, timeout,
    startup_timeout, jobs and quiet (the command line's)."""
    scratch_root = Path(tempfile.mkdtemp(prefix="course-grade-"))
    warnings: list[str] = []
    try:
        sandbox = choose_sandbox(options.sandbox, (*hidden, scratch_root), scratch_root / "sandbox")
        if sandbox.warning:
            warnings.append(sandbox.warning)
        launcher = Launcher(
            sandbox,
            scratch_root,
            preload=_preload_modules(released for released, _ in prepared.values()),
            fontlist=_matplotlib_fontlist(),
            startup_timeout=options.startup_timeout,
            use_zygote=not options.spawn and seccomp.supported(),
        )
        settings = Settings(
            sandbox=sandbox,
            limits=Limits(memory_mb=options.memory_mb, processes=_process_limit()),
            timeout=options.timeout,
            notebook_timeout=options.notebook_timeout,
            startup_timeout=options.startup_timeout,
            launcher=launcher,
        )
        try:
            results = _grade_all(students, names, prepared, settings, options.jobs, options.quiet)
        finally:
            launcher.close()
        if launcher.fallback_reason:
            warnings.append(
                "warning: could not use a preloaded interpreter, so every notebook started a "
                f"fresh one (slower): {launcher.fallback_reason}"
            )
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)
    return ClassRun(results, sandbox.mode, launcher.use_zygote, warnings)


def _grade_all(
    students, names, prepared, settings: Settings, jobs: int, quiet: bool
) -> list[NotebookResult]:
    from tqdm import tqdm

    tasks = [(student, name) for student in students for name in names]

    def grade(task) -> NotebookResult:
        student, name = task
        released, cases = prepared[name]
        path = student / f"{name}.ipynb"
        exists = path.exists() or path.is_symlink()
        try:
            return grade_notebook(student.name, released, path if exists else None, cases, settings)
        except Exception as error:  # noqa: BLE001 - a grader bug: report it, grade the others
            message = f"internal grader error: {type(error).__name__}: {error}"
            rows = [
                Row(
                    student.name,
                    name,
                    exercise.grade_id,
                    0.0,
                    exercise.points,
                    "grader_error",
                    message,
                )
                for exercise in released.exercises
            ]
            return NotebookResult(rows=rows, grader_errors=[f"{student.name}/{name}: {message}"])

    with tqdm(
        total=len(tasks), unit="notebook", file=sys.stderr, disable=quiet, desc="grading"
    ) as progress:
        executor = ThreadPoolExecutor(max_workers=jobs)
        try:
            futures = [executor.submit(grade, task) for task in tasks]
            for future in futures:
                future.add_done_callback(lambda _: progress.update(1))
            return [future.result() for future in futures]
        except KeyboardInterrupt:
            settings.launcher.interrupt()  # kill the running children, start no new one
            raise
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
