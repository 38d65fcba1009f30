"""The memory limit bounds what a submission maps, not what the interpreter maps before it.

A CUDA build of torch maps ~3.2 GB of address space at import (the CPU build ~0.6 GB). Here a released
setup cell reserves 3.3 GB of address space (prot 0 = PROT_NONE: mapped, never used), as such a build would, and
the grader must still give a correct submission full marks under the default limit, while a
submission that maps more than --memory-mb on top is stopped with a message naming the option.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from test_grade import EXERCISES, RELEASED, read_rows, run_grader, setup_cell, write_submission

from course_utils.grade.child import address_space_bytes, limit_memory_above_baseline

RESERVE_LIKE_CUDA_TORCH = (
    "import mmap as _mmap\n"
    "_CUDA_LIKE_RESERVATION = _mmap.mmap(-1, 3300 << 20, _mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS, 0)\n"
)
MAPS_WITHIN_ALLOWANCE = """
def stable_softmax(scores, dim=-1):
    workspace = bytearray(200 << 20)  # 200 MB: well inside a 512 MB allowance
    shifted = (scores - scores.amax(dim, keepdim=True)).exp()
    return shifted / shifted.sum(dim, keepdim=True)
"""
MAPS_TOO_MUCH = """
def stable_softmax(scores, dim=-1):
    hoard = bytearray(600 << 20)  # 600 MB more than the limit allows
    shifted = (scores - scores.amax(dim, keepdim=True)).exp()
    return shifted / shifted.sum(dim, keepdim=True)
"""


def released_with_large_baseline(folder):
    """The released notebook 01 whose setup maps 3.3 GB of address space first."""
    notebook = json.loads(RELEASED.read_text(encoding="utf-8"))
    setup = setup_cell(notebook)
    setup["source"] = RESERVE_LIKE_CUDA_TORCH + "".join(setup["source"])
    folder.mkdir()
    (folder / RELEASED.name).write_text(json.dumps(notebook), encoding="utf-8")
    return folder


def test_a_large_baseline_mapping_leaves_the_submission_its_full_allowance(tmp_path):
    released = released_with_large_baseline(tmp_path / "released")
    submissions = tmp_path / "submissions"
    write_submission(submissions / "correct")
    write_submission(submissions / "moderate", {EXERCISES[0]: MAPS_WITHIN_ALLOWANCE})
    write_submission(submissions / "greedy", {EXERCISES[0]: MAPS_TOO_MUCH})
    result = run_grader(
        str(submissions), "--out", str(tmp_path / "grades.csv"), "--quiet",
        "--released", str(released), "--memory-mb", "512", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_rows(tmp_path / "grades.csv")
    for exercise in EXERCISES:
        assert rows[("correct", exercise)]["status"] == "passed", rows[("correct", exercise)]
    assert rows[("moderate", EXERCISES[0])]["status"] == "passed", rows[("moderate", EXERCISES[0])]
    greedy = rows[("greedy", EXERCISES[0])]
    assert greedy["status"] == "memory" and "--memory-mb" in greedy["message"], greedy
    assert rows[("greedy", EXERCISES[1])]["status"] == "passed"


def test_limit_is_measured_from_the_current_mapping():
    code = (
        "import mmap, sys\n"
        "from course_utils.grade.child import address_space_bytes, limit_memory_above_baseline\n"
        "reserve = mmap.mmap(-1, 3300 << 20, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, 0)  # PROT_NONE\n"
        "baseline = limit_memory_above_baseline(256)\n"
        "assert baseline > 3300 << 20, baseline\n"
        "ok = bytearray(100 << 20)\n"
        "try:\n"
        "    bytearray(400 << 20)\n"
        "except MemoryError:\n"
        "    print('stopped')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "stopped"


def test_address_space_is_read_from_proc():
    assert address_space_bytes() > 100 << 20
    assert callable(limit_memory_above_baseline) and shutil.which(sys.executable) is not None
