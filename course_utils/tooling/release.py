"""Generate the student notebooks in ``notebooks/`` from the instructor notebooks in ``solutions/``.

``solutions/`` is the single source of the course. In a solution cell (nbgrader metadata
``solution: true``) the answer sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
an optional ``### HINT: ...`` line right above BEGIN (kept in the stub, as nbgrader keeps it) or right
after it (removed with the answer) becomes the hint. Release

* replaces each answer span by ``raise NotImplementedError("<hint>")`` (markdown answers by
  ``YOUR ANSWER HERE``), at the indentation of the BEGIN marker;
* clears every output and execution count, and drops saved widget state;
* tags every solution and check cell ``raises-exception``, so an unsolved notebook still runs top
  to bottom (under nbval too); check cells stay ``locked`` (nbgrader) and get ``editable: false`` and
  ``deletable: false`` (what JupyterLab and Notebook honour);
* with ``INSERT_INSTALL_CELL`` on, puts ``course_utils.tooling.install_cell.INSTALL_CELL`` before the first code
  cell (for Colab; off until the course has a public address to install from).

Usage, from the course's folder (``solutions/`` is looked up in the current directory, then in the source
checkout this module belongs to, if any; ``notebooks/`` is the folder next to it)::

    python -m course_utils.release            # write notebooks/
    python -m course_utils.release --check    # exit 1 if notebooks/ is stale (CI runs this)
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
from pathlib import Path

import nbformat

from course_utils.tooling.course_folders import add_folder_option, require_folder
from course_utils.tooling.install_cell import insert_install_cell

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HINT = "### HINT:"
RAISES = "raises-exception"
_MARKER_LINE = re.compile(r"^(?P<indent>[ \t]*)### (BEGIN|END) SOLUTION\s*$")
# The Colab install cell opens every student notebook (course_utils.tooling.install_cell): where the kernel has no
# course_utils it installs COURSE_PIP_SPEC, or says to set it while the course has no public address.
INSERT_INSTALL_CELL = True


class ReleaseError(ValueError):
    """A solution notebook is malformed in a way that could leak or lose an answer."""


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _where(path: Path, index: int, cell) -> str:
    grade_id = nbgrader_meta(cell).get("grade_id")
    return f"{path.name} cell {index}" + (f" (grade_id {grade_id!r})" if grade_id else "")


def _strip_answer(source: str, cell_type: str, where: str) -> str:
    """Replace every BEGIN/END SOLUTION span in ``source`` by a stub."""
    lines = source.split("\n")
    released: list[str] = []
    inside = False
    spans = 0
    hint = ""
    indent = ""
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ReleaseError(f"{where}: nested {BEGIN} on line {number}")
            # A hint on the line just above BEGIN stays in the stub (nbgrader's generator keeps it too).
            above = lines[number - 2].strip() if number >= 2 else ""
            hint = above[len(HINT) :].strip() if above.startswith(HINT) else ""
            inside, spans = True, spans + 1
            indent = _MARKER_LINE.match(line).group("indent") if _MARKER_LINE.match(line) else ""
            continue
        if stripped == END:
            if not inside:
                raise ReleaseError(f"{where}: {END} without {BEGIN} on line {number}")
            inside = False
            if cell_type == "markdown":
                released.append("YOUR ANSWER HERE")
            else:
                released.append(f"{indent}# YOUR CODE HERE")
                released.append(f"{indent}raise NotImplementedError({hint!r})")
            continue
        if inside:
            if stripped.startswith(HINT) and not hint:
                hint = stripped[len(HINT) :].strip()
            continue
        released.append(line)
    if inside:
        raise ReleaseError(f"{where}: {BEGIN} is never closed by {END}")
    if spans == 0:
        raise ReleaseError(
            f"{where}: solution cell has no {BEGIN} / {END} markers, so its answer would be "
            "released to students"
        )
    return "\n".join(released)


def _lock(cell) -> None:
    """A check cell cannot be edited or deleted: nbgrader's flag, and the two JupyterLab honours."""
    cell.metadata["editable"] = False
    cell.metadata["deletable"] = False


def release_notebook(
    solution: nbformat.NotebookNode, path: Path, install_cell: bool | None = None
) -> nbformat.NotebookNode:
    """The student version of one solution notebook (``path`` is used in error messages).

    ``install_cell`` (default ``INSERT_INSTALL_CELL``) puts the Colab install cell first.
    """
    student = copy.deepcopy(solution)
    student.metadata.pop("widgets", None)
    student.metadata.pop("course_recording", None)  # how the outputs were recorded: none are kept
    seen_ids: dict[str, int] = {}
    for index, cell in enumerate(student.cells):
        where = _where(path, index, cell)
        meta = nbgrader_meta(cell)
        has_markers = BEGIN in cell.source or END in cell.source
        grade_id = meta.get("grade_id")
        if meta:
            if not grade_id:
                raise ReleaseError(f"{where}: nbgrader cell without a grade_id")
            if grade_id in seen_ids:
                raise ReleaseError(
                    f"{where}: duplicate grade_id {grade_id!r} (first used in cell "
                    f"{seen_ids[grade_id]})"
                )
            seen_ids[grade_id] = index
        if meta.get("solution"):
            cell.source = _strip_answer(cell.source, cell.cell_type, where)
            if cell.cell_type == "code":
                try:
                    ast.parse(cell.source)
                except SyntaxError as error:
                    raise ReleaseError(
                        f"{where}: released cell is not valid Python ({error.msg}, line "
                        f"{error.lineno}); put the markers inside one block"
                    ) from None
        elif has_markers:
            raise ReleaseError(
                f"{where}: solution markers in a cell without nbgrader 'solution: true' "
                "metadata would leak the answer"
            )
        if meta.get("grade") and not meta.get("solution"):
            if not isinstance(meta.get("points"), (int, float)) or meta["points"] <= 0:
                raise ReleaseError(f"{where}: graded check cell needs positive 'points'")
            _lock(cell)
        elif meta.get("locked"):
            _lock(cell)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            if meta.get("solution") or meta.get("grade"):
                tags = cell.metadata.setdefault("tags", [])
                if RAISES not in tags:
                    tags.append(RAISES)
        for transient in ("execution", "collapsed", "scrolled"):
            cell.metadata.pop(transient, None)
    if INSERT_INSTALL_CELL if install_cell is None else install_cell:
        insert_install_cell(student)
    return student


def render(notebook: nbformat.NotebookNode) -> str:
    return nbformat.writes(notebook) + "\n"


def plan(solutions_dir: Path, notebooks_dir: Path) -> dict[Path, str]:
    """Map each student notebook path to the text it must have."""
    sources = sorted(solutions_dir.glob("[0-9][0-9]_*.ipynb"))
    if not sources:
        raise ReleaseError(f"no solution notebooks (NN_name.ipynb) found in {solutions_dir}")
    texts = {}
    for source in sources:
        try:
            solution = nbformat.read(source, as_version=4)
        except Exception as error:
            raise ReleaseError(f"{source.name}: cannot read notebook: {error}") from None
        texts[notebooks_dir / source.name] = render(release_notebook(solution, source))
    return texts


def stale_notebooks(solutions_dir: Path, notebooks_dir: Path) -> list[str]:
    """Reasons notebooks/ does not match a fresh release (empty when in sync)."""
    expected = plan(solutions_dir, notebooks_dir)
    problems = []
    for target, text in expected.items():
        if not target.exists():
            problems.append(f"{target.name}: missing from {notebooks_dir.name}/")
        elif target.read_text(encoding="utf-8") != text:
            problems.append(f"{target.name}: differs from a fresh release of solutions/")
    for extra in sorted(notebooks_dir.glob("*.ipynb")):
        if extra not in expected:
            problems.append(f"{extra.name}: has no source in solutions/")
    return problems


def release(solutions_dir: Path, notebooks_dir: Path) -> list[Path]:
    notebooks_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for target, text in plan(solutions_dir, notebooks_dir).items():
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course-release", description=__doc__.split("\n")[0])
    add_folder_option(
        parser,
        "--solutions",
        "solutions",
        "instructor notebooks (default: solutions/ in the current directory)",
    )
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=None,
        help="student notebooks to write (default: notebooks/ next to the solutions folder)",
    )
    parser.add_argument(
        "--check", action="store_true", help="fail if notebooks/ is stale; write nothing"
    )
    args = parser.parse_args(argv)
    try:
        require_folder(
            args.solutions, "--solutions", "a folder of solution notebooks (NN_name.ipynb)"
        )
    except FileNotFoundError as error:
        print(f"release error: {error}", file=sys.stderr)
        return 2
    if args.notebooks is None:
        args.notebooks = args.solutions.parent / "notebooks"
    try:
        if args.check:
            problems = stale_notebooks(args.solutions, args.notebooks)
            if problems:
                for problem in problems:
                    print(f"stale: {problem}", file=sys.stderr)
                print("run `make release` (python -m course_utils.release)", file=sys.stderr)
                return 1
            print(
                f"notebooks/ is in sync with solutions/ ({len(plan(args.solutions, args.notebooks))} notebooks)"
            )
            return 0
        written = release(args.solutions, args.notebooks)
    except ReleaseError as error:
        print(f"release error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"released {path.relative_to(path.parent.parent)}")
    if not written:
        print("notebooks/ already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
