"""Grade reports: CSV, JSON, one markdown feedback file per student, and a summary table.

The CSV has exactly the columns ``student, notebook, exercise, points, max_points, status,
message``; the JSON holds the same rows plus per-student and per-notebook totals and how the
grader ran. Messages come from the judge and the runner, which never quote hidden expected values.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from course_utils.grade.runner import Row

COLUMNS = ("student", "notebook", "exercise", "points", "max_points", "status", "message")

STATUSES = {
    "passed": "every hidden case passed",
    "partial": "some hidden cases passed (points in proportion)",
    "failed": "the function ran but its results were wrong (shape, NaN, values)",
    "error": "the code raised an exception, or interfered with the grader",
    "not_implemented": "the exercise still raises NotImplementedError",
    "timeout": "the code ran past the time limit",
    "memory": "the code ran past the memory limit",
    "crashed": "the process died (os._exit, sys.exit at the top level, a signal)",
    "syntax_error": "the cell is not valid Python",
    "missing": "the exercise cell (or the whole notebook) was not found",
    "duplicate": "more than one cell carries the exercise's grade_id",
    "invalid_notebook": "the file is not a readable Jupyter notebook",
    "grader_error": "the grader itself could not run the notebook (not the student's fault)",
}


def _number(value: float) -> str:
    return f"{value:g}"


def write_csv(rows: Iterable[Row], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    row.student,
                    row.notebook,
                    row.exercise,
                    _number(row.points),
                    _number(row.max_points),
                    row.status,
                    row.message,
                ]
            )


def totals(rows: Iterable[Row]) -> dict[str, dict]:
    """Per student: points, max_points, and the same per notebook."""
    students: dict[str, dict] = {}
    for row in rows:
        student = students.setdefault(
            row.student, {"points": 0.0, "max_points": 0.0, "notebooks": {}}
        )
        notebook = student["notebooks"].setdefault(row.notebook, {"points": 0.0, "max_points": 0.0})
        for entry in (student, notebook):
            entry["points"] = round(entry["points"] + row.points, 2)
            entry["max_points"] = round(entry["max_points"] + row.max_points, 2)
    return students


def write_json(rows: list[Row], path: Path, grader: dict, runs: list[dict]) -> None:
    document = {
        "grader": grader,
        "statuses": STATUSES,
        "rows": [asdict(row) for row in rows],
        "students": totals(rows),
        "runs": runs,
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def feedback_filename(student: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", student).strip("._") or "student"
    name, suffix = f"{stem}.md", 2
    while name in taken:
        name, suffix = f"{stem}-{suffix}.md", suffix + 1
    taken.add(name)
    return name


def feedback_markdown(student: str, rows: list[Row]) -> str:
    summary = totals(rows)[student]
    lines = [
        f"# Feedback for {_cell(student)}",
        "",
        f"**Total: {_number(summary['points'])} / {_number(summary['max_points'])} points.**",
        "",
        "Each exercise was run on hidden test cases (different inputs from the check cells in the "
        "notebook). Only your exercise cells were used; the setup cell came from the released notebook.",
    ]
    by_notebook: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_notebook[row.notebook].append(row)
    for notebook, notebook_rows in by_notebook.items():
        notebook_total = summary["notebooks"][notebook]
        lines += [
            "",
            f"## {notebook}: {_number(notebook_total['points'])} / {_number(notebook_total['max_points'])}",
            "",
            "| exercise | points | status | what happened |",
            "|---|---|---|---|",
        ]
        for row in notebook_rows:
            lines.append(
                f"| {row.exercise} | {_number(row.points)} / {_number(row.max_points)} | "
                f"{row.status} | {_cell(row.message)} |"
            )
    used = sorted({row.status for row in rows})
    lines += ["", "## What the statuses mean", ""]
    lines += [f"* **{status}**: {STATUSES.get(status, '')}" for status in used]
    return "\n".join(lines) + "\n"


def write_feedback(rows: list[Row], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    by_student: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_student[row.student].append(row)
    taken: set[str] = set()
    written = []
    for student, student_rows in by_student.items():
        path = folder / feedback_filename(student, taken)
        path.write_text(feedback_markdown(student, student_rows), encoding="utf-8")
        written.append(path)
    return written


def summary_table(rows: list[Row]) -> str:
    """Students × notebooks, points / max, plus a total column."""
    students = totals(rows)
    notebooks = sorted({row.notebook for row in rows})
    header = ["student", *notebooks, "total"]
    table = [header]
    for student, summary in students.items():
        cells = [student]
        for notebook in notebooks:
            entry = summary["notebooks"].get(notebook)
            cells.append(
                f"{_number(entry['points'])}/{_number(entry['max_points'])}" if entry else "-"
            )
        cells.append(f"{_number(summary['points'])}/{_number(summary['max_points'])}")
        table.append(cells)
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    rendered = []
    for index, line in enumerate(table):
        rendered.append(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
        if index == 0:
            rendered.append("  ".join("-" * width for width in widths))
    return "\n".join(rendered)
