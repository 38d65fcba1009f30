"""Grading beyond one machine: ``course-grade SUBMISSIONS --shard K/N`` and ``course-grade merge``.

A shard grades exactly the students whose shard is K: a stable hash of the student folder's name
(SHA-256 of its bytes), so the split depends neither on listing order nor on the machine that
lists. Every shard of one class must be run with the same ``--seed`` (a shard refuses to draw its
own), the same options and the same course; each writes its own CSV and JSON, and its JSON records
what ``merge`` checks: the seed, the course's version and digest, the options, which shard it is,
and every student it graded with the key that orders them.

``course-grade merge PART.json… --out grades.csv [--json …] [--feedback DIR]`` joins the parts into
the CSV and JSON rows, and the per-student totals, that one unsharded run with that seed writes:
the same rows in the same order (students sorted by folder name, as a single run lists them). It
refuses parts that disagree (seed, course, options, number of shards), a student in two parts, a
shard given twice, and a missing shard.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

import course_utils
from course_utils.grade import report
from course_utils.grade.results import Row

# What every shard of one class must share: same inputs, same rules, same judge.
AGREEING_OPTIONS = (
    "seed",
    "course_version",
    "course_digest",
    "notebooks",
    "sandbox",
    "timeout_s",
    "notebook_timeout_s",
    "startup_timeout_s",
    "memory_mb",
)


class ShardError(ValueError):
    """Shards that cannot be merged, or a --shard that cannot be parsed."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/3"`` -> (2, 3): shard K of N, 1-based."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ShardError(
            f"--shard: expected K/N with whole numbers (e.g. 2/3), got {text!r}"
        ) from None
    if not 1 <= index <= count:
        raise ShardError(f"--shard: expected 1 <= K <= N, got {text!r}")
    return index, count


def shard_of(student: str, count: int) -> int:
    """The 1-based shard of a student folder name, the same on every machine and listing."""
    digest = hashlib.sha256(student.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def order_key(student: str) -> str:
    """A JSON-safe key that sorts like the folder name itself (code point by code point), which is
    how one unsharded run orders its students."""
    return student.encode("utf-32-be", "surrogatepass").hex()


def course_digest(released: list[Path]) -> str:
    """SHA-256 of what decides a grade: the released notebooks graded, the exercise specs and the
    feedback layer (two shards of one class must have been graded by the same course)."""
    root = Path(course_utils.__file__).parent
    files = sorted(released) + sorted((root / "exercises").glob("*.py"))
    files += sorted((root / "feedback").glob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def course_version() -> str:
    try:
        return metadata.version("course_utils")
    except metadata.PackageNotFoundError:
        return course_utils.__version__


# -- merge ------------------------------------------------------------------------------------


def _load(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ShardError(f"{path}: expected a course-grade JSON report, got {error}") from None
    shard = document.get("grader", {}).get("shard") if isinstance(document, dict) else None
    if not isinstance(shard, dict) or not {"index", "count", "students"} <= set(shard):
        raise ShardError(f"{path}: expected the JSON of a `course-grade --shard K/N` run, got none")
    return document


def _check_agreement(parts: list[tuple[Path, dict]]) -> int:
    """The number of shards, once every part agrees and each shard is there exactly once."""
    first_path, first = parts[0]
    count = first["grader"]["shard"]["count"]
    for path, document in parts[1:]:
        for option in (*AGREEING_OPTIONS, "count"):
            mine = document["grader"]["shard" if option == "count" else option]
            theirs = first["grader"]["shard" if option == "count" else option]
            if option == "count":
                mine, theirs = mine["count"], theirs["count"]
            if mine != theirs:
                raise ShardError(
                    f"{path} and {first_path} disagree on {option}: {mine!r} vs {theirs!r} "
                    "(every shard of one class must be graded with the same seed, course and options)"
                )
    seen: dict[int, Path] = {}
    for path, document in parts:
        index = document["grader"]["shard"]["index"]
        if index in seen:
            raise ShardError(f"shard {index}/{count} is given twice: {seen[index]} and {path}")
        seen[index] = path
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        listed = ", ".join(f"{index}/{count}" for index in missing)
        raise ShardError(f"missing shard {listed}: expected all {count} shards of the class")
    return count


def merge(parts: list[tuple[Path, dict]]) -> tuple[list[Row], dict, list[dict]]:
    """(rows, grader section, runs) of the whole class, as one unsharded run writes them."""
    count = _check_agreement(parts)
    owner: dict[str, Path] = {}
    keyed = []
    for path, document in parts:
        students = document["grader"]["shard"]["students"]
        for student in students:
            if student in owner:
                raise ShardError(
                    f"student {student!r} is in two shards: {owner[student]} and {path}"
                )
            owner[student] = path
        rows = [Row(**row) for row in document["rows"]]
        runs = document.get("runs", [])
        for student, key in students.items():
            mine = [row for row in rows if row.student == student]
            keyed.append((key, mine, [run for run in runs if run.get("student") == student]))
    keyed.sort(key=lambda entry: entry[0])
    grader = {
        key: value
        for key, value in parts[0][1]["grader"].items()
        if key not in ("shard", "jobs", "grader_errors")
    }
    grader["shards"] = count
    grader["grader_errors"] = [
        message for _, document in parts for message in document["grader"].get("grader_errors", [])
    ]
    rows = [row for _, student_rows, _ in keyed for row in student_rows]
    runs = [run for _, _, student_runs in keyed for run in student_runs]
    return rows, grader, runs


def build_merge_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="course-grade merge",
        description="Join the JSON reports of `course-grade --shard K/N` runs into one class report.",
    )
    parser.add_argument("parts", nargs="+", type=Path, metavar="PART.json")
    parser.add_argument("--out", type=Path, required=True, help="the class's CSV report")
    parser.add_argument(
        "--json", type=Path, default=None, help="JSON report (default: --out with .json)"
    )
    parser.add_argument(
        "--feedback", type=Path, default=None, metavar="DIR", help="write DIR/<student>.md"
    )
    return parser


def merge_main(argv: list[str]) -> int:
    """``course-grade merge``: 0 once the class's reports are written, 2 for parts that disagree."""
    args = build_merge_parser().parse_args(argv)
    json_path = args.json or args.out.with_suffix(".json")
    try:
        parts = [(path, _load(path)) for path in args.parts]
        rows, grader, runs = merge(parts)
    except ShardError as error:
        print(f"course-grade merge: error: {error}", file=sys.stderr)
        return 2
    report.write_csv(rows, args.out)
    report.write_json(rows, json_path, grader=grader, runs=runs)
    if args.feedback is not None:
        report.write_feedback(rows, args.feedback)
    students = len({row.student for row in rows})
    print(
        f"merged {len(parts)} shards: {students} students, {len(rows)} rows -> {args.out}, {json_path}"
    )
    return 0
