"""``course-grade``: grade a folder of submitted notebooks.

    course-grade SUBMISSIONS_DIR --out grades.csv [--feedback DIR] [--jobs N] [--timeout S] [--notebook-timeout S]
                 [--memory-mb M] [--notebooks 01,02] [--sandbox auto|bwrap|none]

    course-grade SUBMISSIONS_DIR --shard K/N --seed S --out part-K.csv     # one shard of a class
    course-grade merge part-*.json --out grades.csv [--feedback DIR]      # the class, joined

Layout: ``SUBMISSIONS_DIR/<student>/<NN_name>.ipynb``. Exit status: 0 when grading ran (whatever
the submissions did), 1 when the grader itself could not run some notebook (see the messages),
2 on misuse (missing or empty folder, unknown notebook, bad option, bwrap requested but unusable),
130 when interrupted (Ctrl-C: every child is killed within seconds and no report is written).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

from course_utils.grade import report, shards
from course_utils.grade.cases import draw_cases, gradable_notebooks
from course_utils.grade.classroom import grade_class
from course_utils.grade.sandbox import SandboxError
from course_utils.grade.submission import NotebookError, ReleasedNotebook, load_released
from course_utils.tooling.course_folders import add_folder_option
from course_utils.tooling.untrusted import student_folders


class UsageError(Exception):
    """Grader misuse: printed as one line, exit status 2."""


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="course-grade",
        description="Grade SUBMISSIONS_DIR/<student>/<NN_name>.ipynb with hidden tests in a sandbox.",
        epilog="Statuses: "
        + "; ".join(f"{name} = {text}" for name, text in report.STATUSES.items()),
    )
    parser.add_argument("submissions", type=Path, metavar="SUBMISSIONS_DIR")
    parser.add_argument(
        "--out", type=Path, default=Path("grades.csv"), help="CSV report (default grades.csv)"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="JSON report (default: --out with .json)"
    )
    parser.add_argument(
        "--feedback", type=Path, default=None, metavar="DIR", help="write DIR/<student>.md"
    )
    parser.add_argument(
        "--jobs",
        type=_positive(int),
        default=min(os.cpu_count() or 1, 8),
        help="parallel submissions (default: CPU count, at most 8)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive(float),
        default=20.0,
        help="wall-clock seconds per exercise (cell + its hidden cases; default 20)",
    )
    parser.add_argument(
        "--notebook-timeout",
        type=_positive(float),
        default=120.0,
        help="wall-clock seconds for a whole notebook: every cell, every case and every restart "
        "of its child together (default 120); what is left when it runs out scores 0",
    )
    parser.add_argument(
        "--startup-timeout",
        type=_positive(float),
        default=60.0,
        help="seconds for the child to import the course and run the setup cell (default 60)",
    )
    parser.add_argument(
        "--memory-mb",
        type=_positive(int),
        default=2048,
        help="address space a submission may map, in MB on top of what the interpreter, torch and "
        "the setup cell already map (default 2048; that baseline is ~0.6 GB with a CPU build of "
        "torch, ~3.2 GB with a CUDA build)",
    )
    parser.add_argument(
        "--notebooks",
        default=None,
        help="comma-separated notebooks to grade, by number or name (01,02 or 01_soft_weights)",
    )
    parser.add_argument(
        "--sandbox",
        choices=("auto", "bwrap", "none"),
        default="auto",
        help="isolation (default auto: bwrap when available)",
    )
    add_folder_option(parser, "--released", "notebooks", "released notebooks (setup cells, points)")
    add_folder_option(
        parser, "--solutions", "solutions", "instructor notebooks, hidden from submissions"
    )
    parser.add_argument(
        "--spawn",
        action="store_true",
        help="start a fresh interpreter for every notebook instead of forking a preloaded one (slower: ~2-3 s each)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the hidden cases (default: random, recorded in the JSON report); the same "
        "seed draws the same cases, so a regrade with it reproduces every point",
    )
    parser.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="grade only the students of shard K of N (1-based; by a stable hash of the folder "
        "name); needs --seed, the same for every shard; join the parts with `course-grade merge`",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary table")
    return parser


def _students(submissions: Path) -> list[Path]:
    if not submissions.exists():
        raise UsageError(f"submissions folder {submissions} does not exist")
    if not submissions.is_dir():
        raise UsageError(
            f"{submissions} is not a folder (expected SUBMISSIONS_DIR/<student>/<NN_name>.ipynb)"
        )
    try:
        students, hidden = student_folders(submissions)
    except OSError as error:
        raise UsageError(f"cannot list {submissions}: {error.strerror or error}") from None
    for folder in hidden:
        _warn(
            f"warning: {report.printable(folder.name)} is not graded: folder names starting "
            "with '.' are hidden folders (e.g. .ipynb_checkpoints); rename it to grade it"
        )
    if not students:
        raise UsageError(
            f"no student folders in {submissions} (expected {submissions}/<student>/<NN_name>.ipynb)"
        )
    return students


def _gradable(released_dir: Path) -> list[str]:
    """Notebooks that are released and whose exercises have specs, sorted."""
    return [name for name in gradable_notebooks() if (released_dir / f"{name}.ipynb").is_file()]


def _select(
    requested: str | None, gradable: list[str], students: list[Path], released_dir: Path
) -> list[str]:
    known = ", ".join(gradable) or "none"
    released = sorted(path.stem for path in released_dir.glob("[0-9][0-9]_*.ipynb"))
    if requested is None:
        submitted = {path.stem for student in students for path in student.glob("*.ipynb")}
        chosen = [name for name in gradable if name in submitted]
        if not chosen:
            raise UsageError(
                f"no submitted notebook has a gradable name (gradable: {known}); name files "
                "<student>/<NN_name>.ipynb or choose notebooks with --notebooks"
            )
        return chosen
    chosen = []
    for token in (part.strip() for part in requested.split(",")):
        if not token:
            continue
        matches = [name for name in gradable if name == token or name.split("_", 1)[0] == token]
        ungraded = [name for name in released if name == token or name.split("_", 1)[0] == token]
        if not matches and ungraded:
            raise UsageError(
                f"notebook {ungraded[0]} has no exercise specs yet (add a module to "
                f"course_utils/exercises/; gradable: {known})"
            )
        if len(matches) != 1:
            raise UsageError(f"unknown notebook {token!r} in --notebooks (gradable: {known})")
        if matches[0] not in chosen:
            chosen.append(matches[0])
    if not chosen:
        raise UsageError(f"--notebooks is empty (gradable: {known})")
    return chosen


def _prepare(name: str, released_dir: Path, seed: int) -> tuple[ReleasedNotebook, dict]:
    try:
        released = load_released(released_dir / f"{name}.ipynb")
    except NotebookError as error:
        raise UsageError(str(error)) from None
    cases = draw_cases(name, seed)
    expected_ids = [exercise.grade_id for exercise in released.exercises]
    missing = [grade_id for grade_id in expected_ids if grade_id not in cases]
    extra = sorted(set(cases) - set(expected_ids))
    if missing or extra:
        raise UsageError(
            f"the exercise specs of {name} are out of sync with {released.path}: "
            f"no spec for {missing or 'none'}, specs for unknown exercises {extra or 'none'}"
        )
    return released, cases


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """``course-grade``: the exit status (0; 1 on grader errors; 2 on bad usage; 130 on Ctrl-C or
    SIGINT, once every child is killed, with no report written)."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["merge"]:
        return shards.merge_main(arguments[1:])
    args = build_parser().parse_args(arguments)
    if threading.current_thread() is threading.main_thread():
        # A shell starts `course-grade ... &` with SIGINT ignored, and Python keeps an ignored
        # SIGINT: `kill -INT` would then be lost instead of stopping the run as documented.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _run(args)
    except UsageError as error:
        print(f"course-grade: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ncourse-grade: interrupted: every child was stopped and NO report was written "
            "(reports of an earlier run are left as they were)",
            file=sys.stderr,
        )
        return 130


def _shard(args: argparse.Namespace, students: list[Path]) -> tuple[list[Path], dict | None]:
    """The students of this run's shard, and the shard's record for the JSON (None: no --shard)."""
    if args.shard is None:
        return students, None
    try:
        index, count = shards.parse_shard(args.shard)
    except shards.ShardError as error:
        raise UsageError(str(error)) from None
    if args.seed is None:
        raise UsageError(
            "--shard needs --seed: every shard of a class must draw the same hidden cases "
            "(choose any number, e.g. --seed $RANDOM, and give it to every shard)"
        )
    mine = [student for student in students if shards.shard_of(student.name, count) == index]
    record = {
        "index": index,
        "count": count,
        "students": {
            report.capped(report.printable(student.name), what="student"): shards.order_key(
                student.name
            )
            for student in mine
        },
    }
    return mine, record


def _run(args: argparse.Namespace) -> int:
    all_students = _students(args.submissions)
    gradable = _gradable(args.released)
    names = _select(args.notebooks, gradable, all_students, args.released)
    students, shard = _shard(args, all_students)
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    prepared = {name: _prepare(name, args.released, seed) for name in names}
    _warn_about_ungradable_files(students, gradable)
    json_path = _check_outputs(args)
    hidden = [args.solutions, args.submissions, args.out, json_path]
    if args.feedback is not None:
        hidden.append(args.feedback)
    try:
        run = grade_class(students, names, prepared, args, [Path(path) for path in hidden])
    except SandboxError as error:
        raise UsageError(str(error)) from None
    for warning in run.warnings:
        _warn(warning)
    rows = [row for result in run.results for row in result.rows]
    runs = _run_facts(students, names, run.results)
    grader_errors = [message for result in run.results for message in result.grader_errors]
    seccomp_problems = {result.seccomp_problem for result in run.results if result.seccomp_problem}
    if seccomp_problems:
        _warn(
            "warning: the seccomp filter could not be installed in the children "
            f"({seccomp_problems.pop()}); submissions could start processes"
        )
    grader = {
        "sandbox": run.sandbox_mode,
        "timeout_s": args.timeout,
        "notebook_timeout_s": args.notebook_timeout,
        "startup_timeout_s": args.startup_timeout,
        "memory_mb": args.memory_mb,
        "jobs": args.jobs,
        "seed": seed,
        "preloaded_interpreter": run.preloaded_interpreter,
        "notebooks": names,
        "course_version": shards.course_version(),
        "course_digest": shards.course_digest([args.released / f"{name}.ipynb" for name in names]),
        "grader_errors": grader_errors,
    }
    if shard is not None:
        grader["shard"] = shard
    feedback_files = _write_reports(args, json_path, rows, grader, runs)
    _print_summary(args, json_path, rows, runs, len(students), len(names), feedback_files)
    for message in grader_errors:
        _warn(f"grader error: {report.printable(message)}")
    return 1 if grader_errors else 0


def _warn_about_ungradable_files(students: list[Path], gradable: list[str]) -> None:
    for student in students:
        for path in sorted(student.glob("*.ipynb")):
            if path.stem not in gradable:
                where = report.printable(f"{student.name}/{path.name}")
                _warn(f"warning: {where} is not a gradable notebook name; ignored")


def _check_outputs(args: argparse.Namespace) -> Path:
    """The JSON report's path, once every output location is known to be writable."""
    json_path = args.json or args.out.with_suffix(".json")
    if json_path.absolute() == args.out.absolute():
        raise UsageError(f"the CSV (--out) and the JSON (--json) would both be {json_path}")
    for path in (args.out, json_path):
        if not path.parent.is_dir():
            raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")
    if args.feedback is not None:
        try:
            args.feedback.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(
                f"cannot create feedback folder {args.feedback}: {error.strerror or error}"
            ) from None
    return json_path


def _run_facts(students: list[Path], names: list[str], results) -> list[dict]:
    tasks = [(student, name) for student in students for name in names]
    return [
        {
            "student": student.name,
            "notebook": name,
            "seconds": round(result.seconds, 3),
            "children": result.children,
        }
        for (student, name), result in zip(tasks, results, strict=True)
    ]


def _print_summary(args, json_path, rows, runs, students: int, notebooks: int, feedback_files):
    if not args.quiet:
        print(report.summary_table(rows))
        print()
    seconds = sorted(run["seconds"] for run in runs)
    median = seconds[len(seconds) // 2] if seconds else 0.0
    print(
        f"graded {students} students × {notebooks} notebooks ({len(rows)} rows, median "
        f"{median:.1f} s per notebook) -> {args.out}, {json_path}"
        + (f", {len(feedback_files)} feedback files in {args.feedback}" if args.feedback else "")
    )


def _write_reports(args, json_path: Path, rows: list, grader: dict, runs: list) -> list[Path]:
    """CSV, JSON and feedback files, each written atomically; Ctrl-C waits until all are written."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
    try:
        report.write_csv(rows, args.out)
        report.write_json(rows, json_path, grader=grader, runs=runs)
        return report.write_feedback(rows, args.feedback) if args.feedback is not None else []
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
