"""Keeping a class's submissions away from the tools that run notebooks without a sandbox.

``course-progress`` and ``record`` execute a notebook's code with the rights of whoever runs them: the
code can read, change or delete anything that user can (``solutions/``, ssh keys, the other
submissions). That is right for the course's own notebooks and a learner's own copy; code written by
someone else must be graded by ``course-grade``, which runs it in a sandbox (docs/grading.md).

So both tools refuse a folder laid out like a class's submissions unless told ``--trust-this-code``.
The layout is the one ``course-grade`` reads, found by the same function (``student_folders``)::

    SUBMISSIONS/<student>/<NN_name>.ipynb

* a folder is a *class's submissions* when it holds no notebook itself and a student folder of it does;
* a folder is *one student's submission* when a folder beside it holds a notebook of the same name
  (``SUBMISSIONS/alice/01_x.ipynb`` beside ``SUBMISSIONS/bob/01_x.ipynb``).

The course's own folders (``notebooks/``, ``solutions/``, ``my-notebooks/``) are never students, so
a learner's copy in the course's folder, the solutions, or a folder of notebooks of one's own pass.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

TRUST_FLAG = "--trust-this-code"
COURSE_FOLDERS = frozenset({"notebooks", "solutions", "my-notebooks"})
# The epilog of both tools' --help, wrapped here (argparse's RawDescriptionHelpFormatter keeps it) so
# that no line break falls inside the flag's name.
NO_SANDBOX_WARNING = textwrap.fill(
    "WARNING: this runs the notebooks' code with your own rights, without a sandbox: it can read, "
    "change or delete anything you can. Run only notebooks you wrote or trust. Grade a class's "
    "submissions with `course-grade SUBMISSIONS` instead, which runs them in a sandbox; a folder "
    f"laid out like submissions (SUBMISSIONS/<student>/NN_name.ipynb) is refused unless {TRUST_FLAG} "
    "is given.",
    width=79,
    break_on_hyphens=False,
    break_long_words=False,
)


class UntrustedFolder(ValueError):
    """A folder that looks like other people's code, given to a tool without a sandbox."""


def student_folders(submissions: Path) -> tuple[list[Path], list[Path]]:
    """(student folders, hidden folders) of ``submissions``, sorted: ``course-grade``'s discovery.

    Every sub-folder is a student's, except one whose name starts with ``.`` (``.ipynb_checkpoints``),
    which is hidden and not graded. Raises ``OSError`` when ``submissions`` cannot be listed."""
    folders = [entry for entry in sorted(submissions.iterdir()) if entry.is_dir()]
    hidden = [folder for folder in folders if folder.name.startswith(".")]
    return [folder for folder in folders if not folder.name.startswith(".")], hidden


def _notebook_names(folder: Path) -> set[str]:
    return {path.name for path in folder.glob("*.ipynb") if path.is_file()}


def _submitted(folder: Path) -> dict[Path, set[str]]:
    """Each student folder of ``folder`` (the course's own folders left out) -> its notebooks."""
    students, _ = student_folders(folder)
    submitted = {
        student: _notebook_names(student)
        for student in students
        if student.name not in COURSE_FOLDERS
    }
    return {student: names for student, names in submitted.items() if names}


def submissions_folder(folder: Path) -> Path | None:
    """The class's submissions folder that ``folder`` is or is one student's folder of; else None."""
    folder = Path(folder).resolve()
    try:
        if not folder.is_dir():
            return None
        own = _notebook_names(folder)
        if not own:
            return folder if _submitted(folder) else None
        if folder.name in COURSE_FOLDERS or folder.parent == folder:
            return None
        # A link to the folder itself (pytest's "...current") is not another student's folder.
        beside = _submitted(folder.parent).items()
        others = [names for other, names in beside if other.resolve() != folder]
        return folder.parent if any(own & names for names in others) else None
    except OSError:  # unreadable: nothing to tell; the tool then reports the folder itself
        return None


def refuse_submissions(given: Path, argument: str, tool: str) -> None:
    """Raise ``UntrustedFolder`` when ``given`` (a folder, or a notebook file; passed as
    ``argument``) is, or is in, a folder laid out like a class's submissions."""
    folder = given if given.is_dir() else given.parent
    submissions = submissions_folder(folder)
    if submissions is None:
        return
    if submissions == folder.resolve():
        where = "a folder laid out like a class's submissions"
    else:
        where = ("in " if folder != given else "") + "one student's folder of a class's submissions"
    raise UntrustedFolder(
        f"{argument}: expected notebooks of your own, got {given}, which is {where} "
        f"({submissions}/<student>/NN_name.ipynb). {tool} runs a notebook's code with your own "
        "rights, without a sandbox, so it refuses code others wrote: grade it in a sandbox with "
        f"`course-grade {submissions}`. If you trust every notebook there, pass {TRUST_FLAG}."
    )


def parser_without_sandbox(prog: str, description: str) -> argparse.ArgumentParser:
    """The argument parser of a tool that runs notebooks without a sandbox: its ``--help`` ends with
    ``NO_SANDBOX_WARNING``, and it takes the flag that lets it run a folder laid out like submissions."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=NO_SANDBOX_WARNING,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        TRUST_FLAG,
        action="store_true",
        help="run notebooks even from a folder laid out like a class's submissions "
        "(SUBMISSIONS/<student>/NN_name.ipynb); only for code you trust",
    )
    return parser
