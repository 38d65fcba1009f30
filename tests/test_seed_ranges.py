"""The seed-range report recomputes what notebooks 08–12 quote, and can say that a quote is wrong."""

from __future__ import annotations

import pytest

from course_utils.benchmark import seed_ranges
from course_utils.benchmark.seed_ranges import QUOTED_RANGES, QuotedRange, main, report


def test_the_cheap_quoted_ranges_still_hold(capsys):
    """10's forgetting draws and 12's copy through memory run in seconds: CI recomputes them."""
    assert main(["--only", "10-forgetting", "12-copy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    figures = [line for line in lines if line.startswith("  ")]
    assert len(figures) == 4 and all(line.endswith("holds") for line in figures), lines


def test_a_range_the_seeds_do_not_give_is_reported_as_differing():
    quoted = QuotedRange("x", "99", "a sentence", {"a": (0.5, 0.9), "b": (None, 0.1)}, 2, dict)
    lines = report(quoted, {"a": [0.5, 0.7, 0.92], "b": [0.0, 0.1], "c": [1.0]})
    assert lines[1].endswith("DIFFERS")  # the max is 0.92, not the quoted 0.9
    assert lines[2].endswith("holds") and lines[3].endswith("not quoted")
    bounded = QuotedRange("y", "99", "at least 0.93", {"a": (0.93, None)}, 2, dict, bounds=True)
    assert report(bounded, {"a": [0.938, 1.0]})[1].endswith("holds")
    assert report(bounded, {"a": [0.91, 1.0]})[1].endswith("DIFFERS")


def test_every_range_names_a_notebook_that_quotes_seeds_and_ids_are_unique():
    ids = [quoted.id for quoted in QUOTED_RANGES]
    assert len(ids) == len(set(ids))
    assert {quoted.notebook for quoted in QUOTED_RANGES} == {"08", "09", "10", "11", "12", "13"}


def test_only_names_what_exists(capsys):
    with pytest.raises(SystemExit):
        main(["--only", "13-nothing"])
    assert "expected notebook numbers or range ids" in capsys.readouterr().err
    assert main(["--list"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(seed_ranges.QUOTED_RANGES)
