"""Grade reports: CSV, JSON, one markdown feedback file per student, and a summary table.

The CSV has exactly the columns ``student, notebook, exercise, points, max_points, status,
message``; the JSON holds the same rows plus per-student and per-notebook totals and how the
grader ran. Messages come from the judge and the runner, which never quote hidden expected values.

Names (student folders, files) and messages can carry whatever a submission put in them, so every
report shows them made safe, and survives any input:

* ``printable``: lone surrogates (a folder name that was not UTF-8, an exception message) and
  control or invisible characters (terminal escape sequences, bidi overrides) are written as
  visible escapes (``\\x1b``), so different names stay different; ``printable_message`` removes
  escape sequences and line breaks first;
* ``report_message``: a message is cut at ``MESSAGE_LIMIT`` characters (after the escapes, which
  lengthen it), with a note saying where, the same in every report: a spreadsheet cell holds at
  most 32,767 characters, and one message once reached 59,771 (huge exception messages, or text
  added by many cases);
* CSV: a cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``) gets a leading
  ``'``; no cell is longer than ``MESSAGE_LIMIT`` characters and its note;
* markdown: HTML is escaped and markdown syntax neutralised, code spans stay code spans;
* every file is written atomically (a temporary file, then a rename): a report is complete or
  absent, never truncated.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from course_utils.grade.results import Row

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


# Characters never shown raw: C0/C1 controls, DEL, invisible format characters that hide or
# reorder text (soft hyphen, zero-width, bidi embeddings/overrides/isolates, BOM), lone surrogates.
_INVISIBLE = (
    "\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
)
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_INVISIBLE}\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, clearing the screen
    r"|\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window title, hyperlinks
    r"|[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|[ -/]*[0-~])?"  # two-character escapes (or a lone ESC)
)
NAME_WIDTH = 40  # longer student names are cut in the summary table (not in the files)
# A spreadsheet cell holds at most 32,767 characters; a message is cut far below that (a reader
# needs its start, not 30,000 characters of it), and the note and a leading ' still fit.
MESSAGE_LIMIT = 8000
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]|])")


def _visible_escape(character: str) -> str:
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (Python's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object) -> str:
    """A name from a submission, safe to print or write anywhere (see the module docstring)."""
    return _UNSAFE.sub(lambda match: _visible_escape(match.group()), str(text))


def printable_message(text: object) -> str:
    """A message on one line: escape sequences removed, controls as spaces, then ``printable``."""
    text = _CONTROL.sub(" ", _ESCAPE_SEQUENCE.sub("", str(text)))
    return printable(" ".join(text.split()))


_CUT_NOTE = re.compile(r"… \[\w+ cut at (\d+) of \d+ characters\]\Z")


def capped(text: str, limit: int = MESSAGE_LIMIT, what: str = "message") -> str:
    """``text`` cut to its first ``limit`` characters, ending with a note that says it was cut
    and how long it was, so a reader never mistakes a cut message for the whole one. A text cut
    already is left as it is (``course-grade merge`` writes reports again from a shard's JSON)."""
    if len(text) <= limit:
        return text
    note = _CUT_NOTE.search(text)
    if note is not None and note.start() == int(note.group(1)) <= limit:
        return text
    return f"{text[:limit]}… [{what} cut at {limit} of {len(text)} characters]"


def report_message(text: object) -> str:
    """A row's message as every report shows it: ``printable_message``, then ``capped``.

    The cap comes after the escapes (an invisible character becomes six visible ones), so it
    bounds what is written; the CSV, the JSON and the feedback all use this one function, so they
    cut a message at the same place and say the same."""
    return capped(printable_message(text))


def spreadsheet_cell(text: str) -> str:
    """Text a spreadsheet shows as text: a would-be formula gets a leading ``'``."""
    return (
        "'" + text
        if text.lstrip().startswith(_FORMULA_START) or text.startswith(_FORMULA_START)
        else text
    )


def _markdown_text(text: str) -> str:
    """Plain text inside markdown: HTML escaped, links, emphasis, code and table syntax inert."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def _markdown_message(text: str) -> str:
    """A message for a table cell: `code` stays a code span (literal inside), the rest is text."""
    message = report_message(text)
    parts = message.split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: the last part is plain text after it
        after = parts.pop()
        parts[-1] += "`" + after
    rendered = []
    for index, part in enumerate(parts):
        if index % 2 == 0:
            between_code = 0 < index < len(parts) - 1
            rendered.append(_markdown_text(part) or (" " if between_code else ""))
        elif part.strip():
            rendered.append("`" + part.replace("|", "\\|") + "`")
    return "".join(rendered)


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _number(value: float) -> str:
    return f"{value:g}"


def write_csv(rows: Iterable[Row], path: Path) -> None:
    """The CSV report; every cell fits a spreadsheet cell (a name is capped like a message, as a
    guard: a folder name is at most 255 bytes, so in practice only messages reach the cap)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for row in rows:
        safe = _safe_row(row)
        texts = [safe["student"], safe["notebook"], safe["exercise"]]
        texts += [_number(row.points), _number(row.max_points), safe["status"], safe["message"]]
        writer.writerow([spreadsheet_cell(text) for text in texts])
    _write_atomically(path, buffer.getvalue())


def _safe_row(row: Row) -> dict:
    """A row as every report writes it: names printable (and capped, as a guard), the message
    ``report_message``. Applying it again changes nothing (``course-grade merge`` relies on it)."""
    fields = asdict(row)
    for name in ("student", "notebook", "exercise"):
        fields[name] = capped(printable(fields[name]), what=name)
    fields["status"] = printable(fields["status"])
    fields["message"] = report_message(fields["message"])
    return fields


def _safe_value(value):
    """Every string in a JSON-able structure made ``printable`` (keys too)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(key): _safe_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe_value(item) for item in value]
    return value


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
        "grader": _safe_value(grader),
        "statuses": STATUSES,
        "rows": [_safe_row(row) for row in rows],
        "students": _safe_value(totals(rows)),
        "runs": _safe_value(runs),
    }
    _write_atomically(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def feedback_filename(student: str, taken: set[str]) -> str:
    """A short, portable file name for ``student`` (unique within ``taken``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", student).strip("._") or "student"
    if len(stem) > 80:  # file names are limited to 255 bytes: keep a prefix and a hash
        digest = hashlib.sha256(student.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        stem = f"{stem[:64]}-{digest}"
    name, suffix = f"{stem}.md", 2
    while name in taken:
        name, suffix = f"{stem}-{suffix}.md", suffix + 1
    taken.add(name)
    return name


def feedback_markdown(student: str, rows: list[Row]) -> str:
    summary = totals(rows)[student]
    lines = [
        f"# Feedback for {_markdown_text(printable_message(student))}",
        "",
        f"**Total: {_number(summary['points'])} / {_number(summary['max_points'])} points.**",
        "",
        "Each exercise was run on hidden test cases (different inputs from the check cells in the "
        "notebook). Your exercise cells and the code cells you added ran, in notebook order; the "
        "setup cell came from the released notebook.",
    ]
    by_notebook: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_notebook[row.notebook].append(row)
    for notebook, notebook_rows in by_notebook.items():
        notebook_total = summary["notebooks"][notebook]
        lines += [
            "",
            f"## {_markdown_text(printable(notebook))}: "
            f"{_number(notebook_total['points'])} / {_number(notebook_total['max_points'])}",
            "",
            "| exercise | points | status | what happened |",
            "|---|---|---|---|",
        ]
        for row in notebook_rows:
            lines.append(
                f"| {_markdown_text(printable(row.exercise))} | {_number(row.points)} / "
                f"{_number(row.max_points)} | {_markdown_text(printable(row.status))} | "
                f"{_markdown_message(row.message)} |"
            )
    used = sorted({row.status for row in rows})
    lines += ["", "## What the statuses mean", ""]
    lines += [
        f"* **{_markdown_text(printable(status))}**: {STATUSES.get(status, '')}" for status in used
    ]
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
        _write_atomically(path, feedback_markdown(student, student_rows))
        written.append(path)
    return written


def summary_table(rows: list[Row]) -> str:
    """Students × notebooks, points / max, plus a total column (names made printable)."""
    students = totals(rows)
    notebooks = sorted({row.notebook for row in rows})
    header = ["student", *(printable(notebook) for notebook in notebooks), "total"]
    table = [header]
    for student, summary in students.items():
        name = printable(student)
        cells = [name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"]
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
