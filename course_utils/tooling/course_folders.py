"""Where the course's folders (``solutions/``, ``notebooks/``, ``my-notebooks/``) are, installed or not.

The command-line tools look in the current directory first. From a source checkout (an editable install)
they also find the checkout's folders from anywhere; a wheel installed into site-packages has no such
folders next to it, so there the current directory is the only place, and its path is the one an error names.
"""

from __future__ import annotations

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]  # course_utils/tooling/this file -> the checkout


def course_folder(name: str) -> Path:
    """``name`` in the current directory, else in the source checkout, else (missing) in the current one."""
    here = Path.cwd() / name
    if here.is_dir():
        return here
    in_checkout = CHECKOUT / name
    if (CHECKOUT / "pyproject.toml").is_file() and in_checkout.is_dir():
        return in_checkout
    return here


def require_folder(path: Path, option: str, expected: str) -> Path:
    """``path`` if it is a folder; else a ``FileNotFoundError`` naming the option, what it wants and what it got."""
    if not path.is_dir():
        state = "does not exist" if not path.exists() else "is not a folder"
        raise FileNotFoundError(
            f"{option}: expected {expected}, got {path}, which {state}; run the command in the "
            f"course's folder or pass {option}"
        )
    return path


def add_folder_option(parser, option: str, folder: str, help: str) -> None:  # noqa: A002 - argparse's name
    """``--option PATH`` defaulting to ``course_folder(folder)`` (course-release and course-grade share it)."""
    parser.add_argument(option, type=Path, default=course_folder(folder), help=help)
