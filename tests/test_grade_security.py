"""The grader against a hostile class: what a submission can see and do, reports that survive
any input, Ctrl-C, and what the submission reader takes from a notebook (issue 14).

Two grader runs (module fixtures) each grade a small class built for one group of points; the
other tests are units. See docs/grading.md for the threat model these tests pin down.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from test_grade import (
    EXERCISES,
    HAS_BWRAP,
    RELEASED,
    ROOT,
    SOLUTION,
    read_rows,
    run_grader,
    write_submission,
)

from course_utils.grade import report, seccomp
from course_utils.grade.results import Row
from course_utils.grade.submission import load_released, read_submission

S1, S2, S3 = EXERCISES
CORRECT_SOFTMAX = """
    shifted = scores - scores.amax(dim=dim, keepdim=True)
    return torch.exp(shifted) / torch.exp(shifted).sum(dim=dim, keepdim=True)
"""

# --- points 1 and 2: the child sees the allow-list only ------------------------------------------

PARENT_SIDE_MODULES = (
    "cli", "runner", "cases", "judging", "protocol", "results", "report", "submission",
    "sandbox", "children", "mounts", "hidden", "shards", "classroom",
)  # fmt: skip

PEEK = (
    """
import importlib.util
import os
import pathlib

import course_utils

LEAKS = []
for path in {forbidden!r}:
    if os.path.lexists(path):
        LEAKS.append(path)
grade = pathlib.Path(course_utils.__file__).parent / "grade"
for module in {parent_side!r}:
    if (grade / module).exists() or (grade / f"{{module}}.py").exists():
        LEAKS.append(f"grade/{{module}} is readable")
    if importlib.util.find_spec(f"course_utils.grade.{{module}}") is not None:
        LEAKS.append(f"course_utils.grade.{{module}} is importable")
if os.getuid() == 0 or os.getgid() == 0:
    LEAKS.append(f"runs as uid {{os.getuid()}} gid {{os.getgid()}}")
with open("/proc/self/status") as status:
    capabilities = dict(line.split(":", 1) for line in status if line.startswith("Cap"))
if int(capabilities["CapEff"], 16) or int(capabilities["CapPrm"], 16):
    LEAKS.append(f"has capabilities {{capabilities['CapEff'].strip()}}")
for folder in ("/", "/dev", str(grade)):
    try:
        open(os.path.join(folder, "planted"), "w").close()
        LEAKS.append(f"{{folder}} is writable")
    except OSError:
        pass

def stable_softmax(scores, dim=-1):
    if LEAKS:
        raise RuntimeError(f"LEAKS {{LEAKS}}")
"""
    + CORRECT_SOFTMAX
)

# --- point 4: nothing of one submission for the next --------------------------------------------

WRITABLE_PLACES = ("/dev", "/dev/shm", "/tmp", "/tmp/work", "/var/tmp", "/run")
LEAVE_FILES = (
    """
import os

WRITTEN = []
for folder in {places!r} + (os.getcwd(), os.path.expanduser("~"), os.environ["TMPDIR"]):
    try:
        with open(os.path.join(folder, "left-by-a"), "w") as handle:
            handle.write("a")
        WRITTEN.append(folder)
    except OSError:
        pass
os.makedirs("/tmp/locked/inner")
with open("/tmp/locked/inner/left-by-a", "w") as handle:
    handle.write("a")
os.chmod("/tmp/locked/inner", 0)
os.chmod("/tmp/locked", 0)

def stable_softmax(scores, dim=-1):
    if "/tmp" not in WRITTEN:
        raise RuntimeError(f"/tmp is not writable (wrote to {{WRITTEN}})")
"""
    + CORRECT_SOFTMAX
).format(places=WRITABLE_PLACES)
FIND_FILES = (
    """
import os

FOUND = []
for folder in {places!r} + (os.getcwd(), os.path.expanduser("~"), os.environ["TMPDIR"]):
    if os.path.lexists(os.path.join(folder, "left-by-a")):
        FOUND.append(folder)
if os.path.lexists("/tmp/locked"):
    FOUND.append("/tmp/locked")

def stable_softmax(scores, dim=-1):
    if FOUND:
        raise RuntimeError(f"found files of the previous submission in {{FOUND}}")
"""
    + CORRECT_SOFTMAX
).format(places=WRITABLE_PLACES)

ABORT = """
import os

def stable_softmax(scores, dim=-1):
    os.abort()
"""


@pytest.fixture(scope="module")
def hostile_class(tmp_path_factory):
    """One bwrap grader run (one zygote: --jobs 1, students in name order) of a hostile class."""
    if not HAS_BWRAP:
        pytest.skip("bubblewrap is not installed")
    tmp = tmp_path_factory.mktemp("hostile")
    submissions = tmp / "submissions"
    archive = tmp / "everyone.zip"  # a file next to the submissions folder
    archive.write_text("every student's work")
    forbidden = [
        str(ROOT / ".git"),
        str(ROOT / "solutions"),
        str(ROOT / "notebooks"),
        str(ROOT / "tests"),
        str(archive),
        str(submissions),
        str(tmp / "grades.csv"),
        "/etc/shadow",
        "/root/.bashrc",
        os.path.expanduser("~/.bash_history"),
    ]
    write_submission(submissions / "a_leaves_files", {S1: LEAVE_FILES})
    write_submission(submissions / "b_finds_none", {S1: FIND_FILES})
    peek = PEEK.format(forbidden=forbidden, parent_side=PARENT_SIDE_MODULES)
    write_submission(submissions / "c_peeks", {S1: peek})
    write_submission(submissions / "d_aborts", {S1: ABORT})
    write_submission(tmp / "elsewhere" / "e_linked")  # a correct notebook, reached by a link
    (submissions / "e_linked").symlink_to(tmp / "elsewhere" / "e_linked")
    result = run_grader(
        str(submissions), "--out", str(tmp / "grades.csv"), "--jobs", "1",
        "--sandbox", "bwrap", "--timeout", "20", "--quiet", cwd=tmp,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((tmp / "grades.json").read_text(encoding="utf-8"))
    return read_rows(tmp / "grades.csv"), document


def test_child_sees_only_the_allow_listed_mounts(hostile_class):
    """Points 1 and 2: no .git, solutions, neighbours of the submissions, root-only files or
    parent-side grader modules; an unprivileged uid without capabilities; read-only mounts."""
    rows, _ = hostile_class
    row = rows[("c_peeks", S1)]
    assert row["status"] == "passed", row["message"]


def test_each_forked_child_starts_from_a_clean_filesystem(hostile_class):
    """Point 4: what one submission writes (/dev, /dev/shm, /tmp, its home, a locked folder) is
    gone for the next one forked by the same preloaded interpreter."""
    rows, document = hostile_class
    assert document["grader"]["preloaded_interpreter"] is True
    for student in ("a_leaves_files", "b_finds_none"):
        row = rows[(student, S1)]
        assert row["status"] == "passed", (student, row["message"])


def test_a_linked_student_folder_is_refused(hostile_class):
    """Point 3: a student folder that is a symbolic link gets 0 with a clear reason."""
    rows, _ = hostile_class
    for exercise in EXERCISES:
        row = rows[("e_linked", exercise)]
        assert row["status"] == "invalid_notebook" and float(row["points"]) == 0, row
        assert "student folder e_linked is a symbolic link" in row["message"]


def test_abort_is_reported_as_an_abort(hostile_class):
    """Point 10: os.abort() is SIGABRT, not a segfault."""
    rows, _ = hostile_class
    row = rows[("d_aborts", S1)]
    assert row["status"] == "crashed" and "SIGABRT" in row["message"], row
    assert "SIGSEGV" not in row["message"]
    assert rows[("d_aborts", S2)]["status"] == "passed"


# --- points 5, 6, 7, 9: reports survive any input ----------------------------------------------

ESCAPE = "\x1b]0;pwned\x07\x1b[2J"
MARKUP = "<script>alert(1)</script><img src=x onerror=alert(2)>"
LONE_SURROGATE = """
def stable_softmax(scores, dim=-1):
    raise ValueError("\\ud800 lone surrogate")
"""
HOSTILE_MESSAGE = f"""
def soft_lookup_answer(query, keys, values, temperature):
    raise ValueError({MARKUP + " " + ESCAPE + " [link](http://example.com) `code`"!r})
"""
FORMULA_NAMES = ("=HYPERLINK(1)", "+SUM(1)", "-2+3", "@SUM(1)")
LATIN1_NAME = os.fsdecode(b"Jos\xe9")  # unzipped from a Latin-1 archive: not UTF-8
LONG_NAME = "x" * 255  # the longest file name Linux allows


def write_nbformat3(folder: Path) -> None:
    notebook = nbformat.read(SOLUTION, as_version=4)
    folder.mkdir(parents=True)
    nbformat.write(nbformat.convert(notebook, 3), folder / SOLUTION.name, version=3)


@pytest.fixture(scope="module")
def odd_class(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("odd")
    submissions = tmp / "submissions"
    write_submission(submissions / "surrogate", {S1: LONE_SURROGATE, S2: HOSTILE_MESSAGE})
    for name in (*FORMULA_NAMES, LATIN1_NAME, LONG_NAME, f"esc{ESCAPE}", ".dotted", "v3"):
        if name == "v3":
            write_nbformat3(submissions / name)
        else:
            write_submission(submissions / name)
    (submissions / "v3" / f"stray{ESCAPE}.ipynb").write_text("{}")
    out = tmp / "out"
    out.mkdir()
    result = run_grader(
        str(submissions), "--out", str(out / "grades.csv"), "--feedback", str(out / "feedback"),
        "--jobs", "1", "--timeout", "20", cwd=tmp,
    )  # fmt: skip
    return result, out


def test_reports_survive_lone_surrogates_odd_and_long_names(odd_class):
    """Point 5: every report is written, complete, with names and messages made printable."""
    result, out = odd_class
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_rows(out / "grades.csv")
    students = {student for student, _ in rows}
    assert {"surrogate", "v3", "Jos\\xe9", LONG_NAME, "esc\\x1b]0;pwned\\x07\\x1b[2J"} <= students
    assert len(rows) == 3 * 9
    assert "\\ud800 lone surrogate" in rows[("surrogate", S1)]["message"]
    document = json.loads((out / "grades.json").read_text(encoding="utf-8"))
    assert len(document["rows"]) == 3 * 9 and document["students"]["Jos\\xe9"]["points"] == 6
    feedback = sorted(path.name for path in (out / "feedback").iterdir())
    assert len(feedback) == 9 and all(len(name.encode()) <= 100 for name in feedback), feedback
    assert not [path for path in out.rglob("*") if path.name.startswith(".tmp-")]


def test_spreadsheet_formulas_are_neutralised(odd_class):
    """Point 6: no CSV cell starts with =, +, - or @."""
    _, out = odd_class
    with open(out / "grades.csv", newline="", encoding="utf-8") as handle:
        cells = [cell for line in csv.reader(handle) for cell in line]
    assert not [cell for cell in cells if cell.lstrip()[:1] in ("=", "+", "-", "@")]
    for name in FORMULA_NAMES:
        assert f"'{name}" in cells


def test_markup_and_terminal_escapes_never_reach_a_reader(odd_class):
    """Point 7: no escape sequence in any report or on the terminal; feedback HTML escaped."""
    result, out = odd_class
    texts = {"stdout": result.stdout, "stderr": result.stderr}
    texts.update({path.name: path.read_text(encoding="utf-8") for path in out.rglob("*.*")})
    for name, text in texts.items():
        assert "\x1b" not in text and "\x07" not in text, name
    surrogate_feedback = (out / "feedback" / "surrogate.md").read_text(encoding="utf-8")
    outside_code_spans = re.sub(r"`[^`\n]*`", "", surrogate_feedback)  # literal inside spans
    assert "<script" not in outside_code_spans and "<img" not in outside_code_spans
    assert "&lt;script&gt;" in outside_code_spans and "\\[link\\]" in outside_code_spans
    mistune = pytest.importorskip("mistune")
    rendered = mistune.html(surrogate_feedback)
    assert "<script" not in rendered and "<img" not in rendered and "<a " not in rendered
    assert "is not a gradable notebook name" in result.stderr


def test_nbformat3_is_graded_and_dot_folders_are_announced(odd_class):
    """Point 9: an nbformat 3 notebook is upgraded and graded; a '.' folder gets a warning."""
    result, out = odd_class
    rows = read_rows(out / "grades.csv")
    assert [rows[("v3", exercise)]["status"] for exercise in EXERCISES] == ["passed"] * 3
    assert ".dotted is not graded" in result.stderr


# --- units: reports ------------------------------------------------------------------------------


def test_report_writing_is_atomic(tmp_path):
    """Point 5: a report that fails half-way leaves the earlier file whole and no temporary."""
    path = tmp_path / "grades.csv"
    alice = Row("alice", "01_soft_weights", S1, 2.0, 2.0, "passed", "ok")
    bob = Row("bob", "01_soft_weights", S1, 0.0, 2.0, "failed", "wrong values")
    report.write_csv([alice, bob], path)
    before = path.read_text(encoding="utf-8")

    def rows_then_failure():
        yield alice
        raise RuntimeError("the grader failed while writing")

    with pytest.raises(RuntimeError):
        report.write_csv(rows_then_failure(), path)
    assert path.read_text(encoding="utf-8") == before
    assert sorted(item.name for item in tmp_path.iterdir()) == ["grades.csv"]


def test_a_huge_message_is_cut_below_a_spreadsheet_cell_and_says_so(tmp_path):
    """Point 5: a 60,000-character message (huge exception messages, or text added by many cases)
    fits a spreadsheet cell (32,767 characters at most) and ends with a note saying where it was
    cut; the cap counts the escapes (an invisible character is written as six), and the CSV, the
    JSON and the feedback cut it at the same place."""
    message = "=" + "\u200b" * 10_000 + "x" * 49_999  # a would-be formula, escapes that lengthen it
    escaped = 1 + 6 * 10_000 + 49_999
    row = Row("alice", "01_soft_weights", S1, 0.0, 2.0, "error", message)
    report.write_csv([row], tmp_path / "grades.csv")
    report.write_json([row], tmp_path / "grades.json", grader={}, runs=[])
    report.write_feedback([row], tmp_path / "feedback")
    with open(tmp_path / "grades.csv", newline="", encoding="utf-8") as handle:
        cells = list(csv.reader(handle))[1]
    assert max(len(cell) for cell in cells) < 32_767  # the most a spreadsheet cell holds
    assert "message cut at" in cells[-1] and cells[-1].startswith("'=\\u200b")
    note = f"[message cut at {report.MESSAGE_LIMIT} of {escaped} characters]"
    assert report.MESSAGE_LIMIT <= 10_000
    assert cells[-1].endswith("… " + note), cells[-1][-80:]
    document = json.loads((tmp_path / "grades.json").read_text(encoding="utf-8"))
    assert "'" + document["rows"][0]["message"] == cells[-1]
    feedback = (tmp_path / "feedback" / "alice.md").read_text(encoding="utf-8")
    assert note.replace("[", "\\[").replace("]", "\\]") in feedback
    assert report.report_message("short") == "short"


def test_printable_keeps_names_apart_and_strips_messages():
    """Points 5 and 7: lone surrogates and controls become visible escapes in names; messages
    lose escape sequences and line breaks."""
    assert report.printable(LATIN1_NAME) == "Jos\\xe9"
    assert report.printable("a\nb") != report.printable("a b")
    assert report.printable("\ud800\u202e") == "\\ud800\\u202e"
    assert report.printable_message(f"one{ESCAPE}\ntwo \x9b31m") == "one two 31m"
    assert report.spreadsheet_cell("=1+1") == "'=1+1" and report.spreadsheet_cell("a=1") == "a=1"


# --- point 8: Ctrl-C ------------------------------------------------------------------------------


def _descendants(root: int) -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command name) of every process below ``root``."""
    table = {}
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)
            name = fields[0].split("(", 1)[1]
            table[int(entry.name)] = (int(fields[1].split()[1]), name)
        except (OSError, ValueError, IndexError):
            continue
    below, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, name) in table.items():
            if ppid == parent and pid not in below:
                below[pid] = (ppid, name)
                frontier.append(pid)
    return below


def _task_state(task: Path) -> str:
    """'S/do_select': a process's or thread's state and the kernel function it waits in."""
    try:
        stat = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        return f"{stat}/{(task / 'wchan').read_text()}"
    except OSError:
        return "gone"


def _what_still_runs(grader: subprocess.Popen, started: dict[int, tuple[int, str]]) -> str:
    """For a failure message: the grader's threads and processes, and what each waits in."""
    proc = Path("/proc") / str(grader.pid)
    threads = {task.name: _task_state(task) for task in (proc / "task").glob("*")}
    now = [(pid, name, _task_state(Path("/proc") / str(pid))) for pid, (_, name) in
           _descendants(grader.pid).items()]  # fmt: skip
    return (
        f"grader poll={grader.poll()}, threads {threads}; processes at Ctrl-C {started}, now {now}"
    )


def _running(processes: dict[int, tuple[int, str]]) -> dict[int, str]:
    """Those of ``processes`` still running (a zombie waiting to be reaped is not running)."""
    running = {}
    for pid, (_, name) in processes.items():
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            running[pid] = name
    return running


def _a_forked_child_runs(grader: int) -> bool:
    """A python process whose parent is a python process below the grader: a zygote's child."""
    below = _descendants(grader)
    return any(
        name.startswith("python") and below.get(ppid, (0, ""))[1].startswith("python")
        for ppid, name in below.values()
    )


INFINITE_LOOP = """
def stable_softmax(scores, dim=-1):
    while True:
        pass
"""


def test_ctrl_c_stops_within_two_seconds_and_writes_nothing(tmp_path):
    """Point 8: SIGINT while children run: exit within ~2 s, status 130, every child killed, no
    report written (the choice: nothing rather than a partial report), also when the grader was
    started with SIGINT ignored."""
    submissions = tmp_path / "submissions"
    for student in ("ann", "bob", "cid", "dee", "eve", "fay"):
        write_submission(submissions / student, {S1: INFINITE_LOOP})
    # Started as a shell's background job is (`course-grade ... &`): with SIGINT ignored, which
    # Python would keep, losing the signal. The grader must stop all the same.
    command = [
        "sh", "-c", 'trap "" INT; exec "$0" "$@"',
        sys.executable, "-m", "course_utils.grade", str(submissions),
        "--out", str(tmp_path / "grades.csv"), "--jobs", "2", "--timeout", "60", "--quiet",
    ]  # fmt: skip
    grader = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _a_forked_child_runs(grader.pid):
            assert grader.poll() is None and time.monotonic() < deadline, "no child started"
            time.sleep(0.2)
        time.sleep(1.0)  # both grading threads busy in an infinite loop
        started = _descendants(grader.pid)
        sent = time.monotonic()
        grader.send_signal(signal.SIGINT)
        try:
            _, stderr = grader.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(
                "the grader kept running for 10 s after Ctrl-C; "
                + _what_still_runs(grader, started)
            )
        stopped_after = time.monotonic() - sent
    finally:
        if grader.poll() is None:
            os.killpg(grader.pid, signal.SIGKILL)
            grader.wait()
    assert stopped_after < 3.0, f"stopped {stopped_after:.1f} s after Ctrl-C"
    assert grader.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "no report was written" in stderr.lower()
    assert not (tmp_path / "grades.csv").exists() and not (tmp_path / "grades.json").exists()
    leftovers = _running(started)
    deadline = time.monotonic() + 5  # a killed pid namespace is torn down asynchronously
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.1)
        leftovers = _running(started)
    assert not leftovers, f"processes left behind: {leftovers}"


# --- point 10 (unit): a process may signal itself under the seccomp filter ----------------------


@pytest.mark.skipif(not seccomp.supported(), reason="no seccomp filter on this machine")
def test_seccomp_lets_the_process_abort_itself_but_not_signal_others():
    probe = """
import os
from course_utils.grade import seccomp
seccomp.install()
os.kill(os.getpid(), 0)  # itself: allowed
try:
    os.kill(os.getppid(), 0)
    raise SystemExit("signalled its parent")
except PermissionError:
    pass
os.abort()
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGABRT, (result.returncode, result.stderr[-500:])


# --- points 3, 9 and 11 (units): reading a submission --------------------------------------------


def test_reader_refuses_a_linked_student_folder(tmp_path):
    """Point 3 (unit)."""
    write_submission(tmp_path / "real")
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    submission = read_submission(tmp_path / "linked" / SOLUTION.name, load_released(RELEASED))
    assert submission.problem is not None
    assert submission.problem[0] == "invalid_notebook" and "symbolic link" in submission.problem[1]


def test_reader_upgrades_nbformat3_and_names_other_versions(tmp_path):
    """Point 9 (unit)."""
    released = load_released(RELEASED)
    write_nbformat3(tmp_path / "v3")
    submission = read_submission(tmp_path / "v3" / SOLUTION.name, released)
    assert submission.problem is None and not submission.cell_problems
    assert sorted(submission.sources) == sorted(EXERCISES)
    assert submission.added_cells == []
    old = tmp_path / "v2.ipynb"
    old.write_text(json.dumps({"nbformat": 2, "worksheets": []}))
    problem = read_submission(old, released).problem
    assert problem is not None and "nbformat 2" in problem[1]


def _cell(source: str, cell_id: str) -> dict:
    return {
        "cell_type": "code",
        "id": cell_id,
        "metadata": {},
        "source": source,
        "outputs": [],
        "execution_count": None,
    }


def test_reader_returns_the_cells_a_learner_added_in_order(tmp_path):
    """Point 11: added code cells (new id, not a released source), each with the exercise that
    follows; edited or copied released cells, markdown and empty cells are not added cells."""
    released = load_released(RELEASED)
    notebook = json.loads(SOLUTION.read_text(encoding="utf-8"))
    cells = notebook["cells"]
    position = {cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"): index
                for index, cell in enumerate(cells)}  # fmt: skip
    setup = next(cell for cell in cells if cell["cell_type"] == "code")
    demo = next(
        cell for cell in cells[position[S1] + 1 :]
        if cell["cell_type"] == "code" and not cell["metadata"].get("nbgrader")
    )  # fmt: skip
    demo["source"] = "print('I changed the demo')\n"  # an edited released cell keeps its id
    cells.insert(position[S2], _cell("%time 1\ndef my_scores(q, k):\n    return k @ q\n", "a1"))
    cells.insert(position[S2], _cell("HELPER = 2\n", "a0"))
    cells.insert(position[S2], _cell("   \n", "blank"))
    cells.insert(position[S2], dict(_cell("".join(setup["source"]), "copy")))  # a pasted setup
    cells.append(_cell("print('after the last exercise')", "a2"))
    cells.append({"cell_type": "markdown", "id": "md", "metadata": {}, "source": "notes"})
    path = tmp_path / "s" / SOLUTION.name
    path.parent.mkdir()
    path.write_text(json.dumps(notebook), encoding="utf-8")
    submission = read_submission(path, released)
    assert submission.problem is None and sorted(submission.sources) == sorted(EXERCISES)
    added = [(cell.source.strip(), cell.before) for cell in submission.added_cells]
    assert added == [
        ("HELPER = 2", S2),
        ("def my_scores(q, k):\n    return k @ q", S2),
        ("print('after the last exercise')", None),
    ]
    indexes = [cell.index for cell in submission.added_cells]
    assert indexes == sorted(indexes)


def test_the_solution_notebook_has_no_added_cells():
    """Point 11: the instructor's notebook is the released one plus answers: nothing 'added'."""
    submission = read_submission(SOLUTION, load_released(RELEASED))
    assert submission.added_cells == [] and submission.notes == []


# --- the staged package (point 2, without bwrap) -------------------------------------------------


def test_staged_package_holds_only_the_child_side_of_the_grader(tmp_path):
    from course_utils.grade.mounts import CHILD_MODULES, stage_package

    stage_package(tmp_path)
    grade = tmp_path / "course_utils" / "grade"
    modules = {path.stem for path in grade.glob("*.py")}
    assert modules == set(CHILD_MODULES)
    assert not [path for path in grade.iterdir() if path.is_dir() and path.name != "__pycache__"]
    compiled = {path.name.split(".", 1)[0] for path in (grade / "__pycache__").glob("*.pyc")}
    assert compiled <= set(CHILD_MODULES)
    assert (tmp_path / "course_utils" / "exercises" / "__init__.py").is_file()
