"""Reading notebooks: the released notebook (trusted) and a learner's submission (untrusted).

From the RELEASED notebook (``notebooks/NN_name.ipynb``) come

* the setup: its first code cell, with IPython magics (``%...``, ``!...``) removed, followed by
  the top-level ``import`` statements of its other plain code cells (e.g. ``import
  course_utils.attention as reference`` in a demo cell that a later exercise relies on) — the
  imports only, never the demo code;
* the exercises, in notebook order: each solution cell's nbgrader ``grade_id``, the function it
  defines (the first top-level ``def``), and its points (the ``points`` of the check cell whose
  grade_id is ``<grade_id>_check``).

From a SUBMISSION are taken the source of the code cell carrying each exercise's grade_id, and
the code cells the learner ADDED (helpers of their own, see ``AddedCell``). Nothing in a submission
can stop the grader: an unreadable file, invalid JSON, a file that is not a notebook, a link (the
file or the student folder), a missing or duplicated cell each become a status and a reason for
the affected exercises (see ``Submission``). An nbformat 3 notebook is upgraded to nbformat 4.
"""

from __future__ import annotations

import ast
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from course_utils.tooling.install_cell import INSTALL_CELL_ID

MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024
MAX_CELL_CHARACTERS = 256 * 1024
MAX_ADDED_CELLS = 100


class NotebookError(ValueError):
    """A released notebook the grader cannot use (a course-authoring problem, not a learner's)."""


@dataclass(frozen=True)
class GradedCell:
    """A graded solution cell of the released notebook: its grade_id, the function it defines, its points."""

    grade_id: str
    function: str
    points: float


@dataclass(frozen=True)
class ReleasedNotebook:
    name: str  # "01_soft_weights"
    path: Path
    setup_source: str
    exercises: tuple[GradedCell, ...]
    cell_ids: frozenset[str] = frozenset()  # nbformat ids of every released cell
    code_sources: frozenset[str] = frozenset()  # every released code cell, ``normalized``

    @property
    def max_points(self) -> float:
        return sum(exercise.points for exercise in self.exercises)


def _source(cell: dict) -> str | None:
    source = cell.get("source", "")
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        return "".join(source)
    return source if isinstance(source, str) else None


def _nbgrader(cell: dict) -> dict:
    metadata = cell.get("metadata")
    nbgrader = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    return nbgrader if isinstance(nbgrader, dict) else {}


def normalized(source: str) -> str:
    """A cell's source without trailing spaces and surrounding blank lines, for comparing cells."""
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def strip_magics(source: str) -> str:
    """Drop IPython magic and shell lines (``%matplotlib inline``, ``!pip ...``)."""
    return "\n".join(
        line for line in source.split("\n") if not line.lstrip().startswith(("%", "!"))
    )


def _defined_function(source: str, where: str) -> str:
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise NotebookError(f"{where}: released cell is not valid Python ({error.msg})") from None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return node.name
    raise NotebookError(f"{where}: released solution cell defines no function")


def _imports_of_plain_cells(cells: list[dict]) -> list[str]:
    """Top-level import statements of code cells that are neither exercises nor checks."""
    imports: list[str] = []
    for cell in cells:
        meta = _nbgrader(cell)
        if meta.get("solution") or meta.get("grade"):
            continue
        source = strip_magics(_source(cell) or "")
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                statement = ast.get_source_segment(source, node)
                if statement and statement not in imports:
                    imports.append(statement)
    return imports


def load_released(path: Path) -> ReleasedNotebook:
    """Read the setup cell and the graded exercises of a released notebook."""
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = notebook["cells"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise NotebookError(f"{path}: cannot read the released notebook: {error}") from None
    code_cells = [
        cell
        for cell in cells
        if cell.get("cell_type") == "code" and cell.get("id") != INSTALL_CELL_ID
    ]  # the Colab install cell is not the setup: the grader's environment has course_utils
    if not code_cells:
        raise NotebookError(f"{path}: has no code cell to use as setup")
    if _nbgrader(code_cells[0]).get("solution"):
        raise NotebookError(f"{path}: the first code cell is an exercise, not the setup")
    setup_source = strip_magics(_source(code_cells[0]) or "")
    later_imports = _imports_of_plain_cells(code_cells[1:])
    if later_imports:
        setup_source += "\n\n# imports made by the notebook's other cells\n" + "\n".join(
            later_imports
        )
    check_points = {}
    solution_ids = []
    for cell in code_cells:
        meta = _nbgrader(cell)
        grade_id = meta.get("grade_id")
        if meta.get("solution") and grade_id:
            solution_ids.append((grade_id, _source(cell) or ""))
        elif meta.get("grade") and grade_id:
            check_points[grade_id] = meta.get("points")
    exercises = []
    for grade_id, source in solution_ids:
        where = f"{path.name} {grade_id}"
        points = check_points.get(f"{grade_id}_check")
        if not isinstance(points, (int, float)) or isinstance(points, bool) or points <= 0:
            raise NotebookError(
                f"{where}: no check cell with grade_id {grade_id}_check and positive points"
            )
        exercises.append(GradedCell(grade_id, _defined_function(source, where), float(points)))
    if not exercises:
        raise NotebookError(f"{path}: has no graded exercises")
    cell_ids = frozenset(cell["id"] for cell in cells if isinstance(cell.get("id"), str))
    code_sources = frozenset(normalized(_source(cell) or "") for cell in code_cells)
    return ReleasedNotebook(path.stem, path, setup_source, tuple(exercises), cell_ids, code_sources)


@dataclass(frozen=True)
class AddedCell:
    """A code cell the learner added: neither a released cell nor an exercise cell.

    Recognised by having no nbgrader grade_id, an nbformat id that no released cell has (Jupyter
    gives a new or pasted cell a new id; an edited released cell keeps its own), and a source that
    is not that of a released code cell. ``source`` has IPython magics and shell lines removed;
    ``before`` is the grade_id of the next exercise cell in the notebook (None after the last):
    the cell runs before that exercise, in notebook order.
    """

    index: int  # position among the notebook's cells (0 = first)
    source: str
    before: str | None


@dataclass
class Submission:
    """What was found in one submitted notebook.

    ``problem`` (status, message) applies to every exercise (missing file, invalid notebook, a
    link); otherwise ``sources`` maps grade_id to the submitted cell source, ``cell_problems``
    maps grade_id to (status, message) for exercises whose cell is missing, duplicated or
    unusable, ``added_cells`` lists the learner's own code cells in notebook order, and
    ``notes`` says what was left out (an added cell above the size limit...).
    """

    problem: tuple[str, str] | None = None
    sources: dict[str, str] = field(default_factory=dict)
    cell_problems: dict[str, tuple[str, str]] = field(default_factory=dict)
    added_cells: list[AddedCell] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _invalid(message: str) -> Submission:
    return Submission(problem=("invalid_notebook", message))


def _read_file(path: Path) -> bytes | Submission:
    """The bytes of the submitted file, or a Submission saying why not (links are refused)."""
    try:
        if path.parent.is_symlink():
            # A linked student folder could point at anything the grader can read (solutions/).
            return _invalid(
                f"the student folder {path.parent.name} is a symbolic link: submit a real folder"
            )
        if path.is_symlink():
            # A link could point at anything the grader can read, e.g. the instructor's notebook.
            return _invalid(f"{path.name} is a symbolic link: submit the notebook file itself")
        if not path.is_file():
            kind = "a folder" if path.is_dir() else "not a regular file"
            return _invalid(f"{path.name} is {kind}")
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                return _invalid(f"{path.name} is not a regular file")
            if info.st_size > MAX_NOTEBOOK_BYTES:
                size = info.st_size / 2**20
                return _invalid(f"the file is {size:.0f} MiB, larger than the 64 MiB limit")
            return handle.read(MAX_NOTEBOOK_BYTES + 1)
    except OSError as error:
        return _invalid(f"cannot read the file: {error.strerror or error}")


def _parse(raw: bytes) -> tuple[list, bool] | Submission:
    """(cells, whether their ids can be trusted), or a Submission saying why not."""
    try:
        notebook = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        return _invalid("the file is not UTF-8 text, so not a notebook")
    except json.JSONDecodeError as error:
        return _invalid(
            f"the file is not valid JSON ({error.msg} at line {error.lineno}, column "
            f"{error.colno}): was it saved completely, or edited by hand?"
        )
    except (ValueError, RecursionError) as error:
        return _invalid(f"the file is not valid JSON ({type(error).__name__})")
    if not isinstance(notebook, dict):
        return _invalid("the file is JSON but not a Jupyter notebook (no list of cells)")
    version = notebook.get("nbformat")
    if "cells" not in notebook and version == 3 and isinstance(notebook.get("worksheets"), list):
        import nbformat

        try:  # the ids nbformat makes up for the upgraded cells mean nothing
            return nbformat.convert(nbformat.from_dict(notebook), 4)["cells"], False
        except Exception as error:  # noqa: BLE001 - any failure of the upgrade is the file's
            return _invalid(
                f"an nbformat 3 notebook that could not be upgraded to nbformat 4 "
                f"({type(error).__name__}): open it in Jupyter and save it again"
            )
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        if isinstance(version, int) and version != 4:
            return _invalid(
                f"an nbformat {version} notebook, which this grader cannot read (it reads "
                "nbformat 3 and 4): open it in a current Jupyter and save it again"
            )
        return _invalid("the file is JSON but not a Jupyter notebook (no list of cells)")
    return cells, True


def read_submission(path: Path | None, released: ReleasedNotebook) -> Submission:
    if path is None:
        return Submission(problem=("missing", f"no {released.name}.ipynb was submitted"))
    raw = _read_file(path)
    if isinstance(raw, Submission):
        return raw
    parsed = _parse(raw)
    if isinstance(parsed, Submission):
        return parsed
    cells, ids_known = parsed
    found: dict[str, list[dict]] = {}
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        grade_id = _nbgrader(cell).get("grade_id")
        if isinstance(grade_id, str):
            found.setdefault(grade_id, []).append(cell)
    submission = Submission()
    for exercise in released.exercises:
        matches = found.get(exercise.grade_id, [])
        if not matches:
            submission.cell_problems[exercise.grade_id] = (
                "missing",
                f"no cell with nbgrader grade_id {exercise.grade_id!r}: the exercise cell or its "
                "metadata was deleted; copy the cell from the released notebook and resubmit",
            )
            continue
        if len(matches) > 1:
            submission.cell_problems[exercise.grade_id] = (
                "duplicate",
                f"{len(matches)} cells carry grade_id {exercise.grade_id!r} (a copied cell?): "
                "keep exactly one",
            )
            continue
        cell = matches[0]
        source = _source(cell)
        if cell.get("cell_type") != "code" or source is None:
            submission.cell_problems[exercise.grade_id] = (
                "missing",
                f"the cell with grade_id {exercise.grade_id!r} is not a code cell with text source",
            )
        elif len(source) > MAX_CELL_CHARACTERS:
            submission.cell_problems[exercise.grade_id] = (
                "error",
                f"the cell is {len(source)} characters long, above the {MAX_CELL_CHARACTERS} limit",
            )
        else:
            submission.sources[exercise.grade_id] = source
    _find_added_cells(cells, ids_known, released, submission)
    return submission


def _find_added_cells(
    cells: list, ids_known: bool, released: ReleasedNotebook, submission: Submission
) -> None:
    """Fill ``submission.added_cells`` (and ``notes``): see ``AddedCell``."""
    exercise_ids = {exercise.grade_id for exercise in released.exercises}
    pending: list[tuple[int, str]] = []  # added cells waiting for the next exercise cell
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        grade_id = _nbgrader(cell).get("grade_id")
        if isinstance(grade_id, str):
            if grade_id in exercise_ids:
                submission.added_cells += [AddedCell(i, text, grade_id) for i, text in pending]
                pending = []
            continue  # a check cell, or another released cell of nbgrader's
        source = _source(cell)
        if source is None or not source.strip():
            continue
        cell_id = cell.get("id")
        if ids_known and isinstance(cell_id, str) and cell_id in released.cell_ids:
            continue  # a released cell (possibly edited): never the learner's own code
        if normalized(source) in released.code_sources:
            continue  # a copy of a released cell (setup, demo, check)
        if len(source) > MAX_CELL_CHARACTERS:
            submission.notes.append(
                f"your added cell {index + 1} is {len(source)} characters long, above the "
                f"{MAX_CELL_CHARACTERS} limit: it was not run"
            )
        elif len(submission.added_cells) + len(pending) >= MAX_ADDED_CELLS:
            submission.notes.append(
                f"your added cell {index + 1} was not run: at most {MAX_ADDED_CELLS} added "
                "cells are"
            )
        else:
            pending.append((index, strip_magics(source)))
    submission.added_cells += [AddedCell(i, text, None) for i, text in pending]
