"""The first cell of a notebook opened in Colab or another hosted Jupyter: install ``course_utils`` if missing.

That cell runs before ``course_utils`` exists in the kernel, so it cannot import anything from it: it is
plain Python, kept here as the text ``INSTALL_CELL`` and inserted by ``course_utils.tooling.release`` when its
``INSERT_INSTALL_CELL`` flag is on. Where the kernel already has ``course_utils`` (``make lab``, the grader,
a kernel where it was installed before) the cell does nothing. Otherwise it runs
``pip install <COURSE_PIP_SPEC>`` with the kernel's own Python; the course's dependencies (torch, numpy,
matplotlib, nbformat, tqdm) are already installed on Colab, so pip adds ``course_utils`` and changes nothing else.

``COURSE_PIP_SPEC`` is anything ``pip install`` accepts: a git URL (``git+https://…/attention-course.git``),
a wheel's path or URL, plus options (``course_utils-0.1.0-py3-none-any.whl --no-deps``). The course is not on
PyPI and its repository has no public address yet, so ``DEFAULT_PIP_SPEC`` is empty: the cell then stops
with a message saying what to set. Once the repository is public, put its git URL in ``DEFAULT_PIP_SPEC``
and release again.
"""

from __future__ import annotations

import json

import nbformat
from nbformat.v4 import new_code_cell

DEFAULT_PIP_SPEC = ""
INSTALL_CELL_ID = "course-install"

INSTALL_CELL = f"""\
# Colab and other hosted Jupyter: installs the course library if this kernel lacks it; changes nothing else.
import importlib
import importlib.util
import os
import shlex
import subprocess
import sys

if importlib.util.find_spec("course_utils") is None:
    COURSE_PIP_SPEC = os.environ.get("COURSE_PIP_SPEC", {json.dumps(DEFAULT_PIP_SPEC)})
    if not COURSE_PIP_SPEC:
        raise ModuleNotFoundError(
            "course_utils is not installed in this kernel. Set COURSE_PIP_SPEC to what `pip install` should "
            "get (the course's git URL or a wheel), e.g. os.environ['COURSE_PIP_SPEC'] = "
            "'git+https://<host>/<owner>/attention-course.git', then run this cell again."
        )
    subprocess.check_call([sys.executable, "-m", "pip", "install", *shlex.split(COURSE_PIP_SPEC)])
    importlib.invalidate_caches()
    import course_utils  # noqa: F401  (fails here, not three cells later, if the install did not work)
"""


def install_cell() -> nbformat.NotebookNode:
    """``INSTALL_CELL`` as a code cell with a fixed id, so a release is byte-for-byte reproducible."""
    cell = new_code_cell(INSTALL_CELL.rstrip("\n"))
    cell.id = INSTALL_CELL_ID
    return cell


def insert_install_cell(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Put the install cell before the first code cell of ``notebook`` (in place), once."""
    if any(cell.get("id") == INSTALL_CELL_ID for cell in notebook.cells):
        return notebook
    first_code = next(
        (index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"),
        len(notebook.cells),
    )
    notebook.cells.insert(first_code, install_cell())
    return notebook
