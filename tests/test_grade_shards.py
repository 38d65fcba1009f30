"""``course-grade --shard K/N`` and ``course-grade merge``: a class graded in 3 shards and merged
equals the unsharded run, row for row; parts that disagree are refused; the ready examples in
docs/grading-at-scale/ call the real command line."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import pytest
from test_grade import EXERCISES, NAIVE_SOFTMAX, TIMES_TEMPERATURE, run_grader, write_submission

from course_utils.grade import cli, shards

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "grading-at-scale"
SEED = "4242"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    submissions = root / "class"
    s1, s2, _ = EXERCISES
    for index in range(8):
        variant = {0: {s1: NAIVE_SOFTMAX}, 1: {s2: TIMES_TEMPERATURE}}.get(index % 3, {})
        write_submission(submissions / f"student-{index}", variant)
    common = ("--seed", SEED, "--jobs", "2", "--quiet")
    whole = run_grader(str(submissions), "--out", str(root / "whole.csv"), *common, cwd=root)
    assert whole.returncode == 0, whole.stderr[-2000:]
    for index in (1, 2, 3):
        part = run_grader(
            str(submissions), "--shard", f"{index}/3", "--out", str(root / f"part-{index}.csv"),
            *common, cwd=root,
        )  # fmt: skip
        assert part.returncode == 0, part.stderr[-2000:]
    parts = [str(root / f"part-{index}.json") for index in (1, 2, 3)]
    assert cli.main(["merge", *parts, "--out", str(root / "merged.csv")]) == 0
    return root


def test_three_shards_merged_equal_the_unsharded_run_row_for_row(graded):
    assert (graded / "merged.csv").read_text() == (graded / "whole.csv").read_text()
    whole = json.loads((graded / "whole.json").read_text())
    merged = json.loads((graded / "merged.json").read_text())
    assert merged["rows"] == whole["rows"]
    assert merged["students"] == whole["students"]
    assert merged["grader"]["seed"] == whole["grader"]["seed"] and merged["grader"]["shards"] == 3
    students = [
        json.loads((graded / f"part-{i}.json").read_text())["grader"]["shard"]["students"]
        for i in (1, 2, 3)
    ]
    assert sum(len(part) for part in students) == 8  # every student in exactly one shard


def test_the_shard_of_a_student_depends_only_on_its_name():
    names = [f"student-{index}" for index in range(50)]
    assert [shards.shard_of(name, 3) for name in names] == [
        shards.shard_of(name, 3) for name in reversed(names)
    ][::-1]
    assert {shards.shard_of(name, 3) for name in names} == {1, 2, 3}


def _parts(graded) -> list[tuple[Path, dict]]:
    return [
        (graded / f"part-{index}.json", json.loads((graded / f"part-{index}.json").read_text()))
        for index in (1, 2, 3)
    ]


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (lambda parts: parts[1][1]["grader"].update(seed=1), "disagree on seed"),
        (
            lambda parts: parts[1][1]["grader"].update(course_digest="0" * 64),
            "disagree on course_digest",
        ),
        (lambda parts: parts[2][1]["grader"].update(timeout_s=99.0), "disagree on timeout_s"),
        (lambda parts: parts.pop(), "missing shard 3/3"),
        (lambda parts: parts[2][1]["grader"]["shard"].update(index=1), "shard 1/3 is given twice"),
        (
            lambda parts: parts[1][1]["grader"]["shard"]["students"].update(
                parts[0][1]["grader"]["shard"]["students"]
            ),
            "is in two shards",
        ),
    ],
)
def test_parts_that_disagree_are_refused(graded, change, refusal):
    parts = copy.deepcopy(_parts(graded))
    change(parts)
    with pytest.raises(shards.ShardError, match=refusal):
        shards.merge(parts)


def test_a_shard_without_a_seed_is_refused(tmp_path, capsys):
    write_submission(tmp_path / "class" / "alice")
    assert (
        cli.main([str(tmp_path / "class"), "--shard", "1/2", "--out", str(tmp_path / "g.csv")]) == 2
    )
    assert "--shard needs --seed" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "class"), "--shard", "3/2", "--seed", "1"]) == 2
    assert "expected 1 <= K <= N" in capsys.readouterr().err


def _example_commands() -> list[list[str]]:
    """Every `course-grade …` command line in the ready examples, as argument lists."""
    variable = r"\$\(\([^)]*\)\)|\$\{\{[^}]*\}\}|\$\{\w+(:-)?\}|\$\w+"  # $((…)), ${{ … }}, ${X}, $X
    commands = []
    for path in sorted(EXAMPLES.iterdir()):
        text = path.read_text(encoding="utf-8").replace("\\\n", " ")
        for match in re.finditer(r"course-grade[ \t]+(.*)", text):
            words = shlex.split(re.sub(variable, "1", match.group(1)))
            commands.append((path.name, words))
    return commands


def test_the_ready_examples_use_the_real_command_line():
    commands = _example_commands()
    files = {name for name, _ in commands}
    assert {"slurm-array.sh", "kubernetes-indexed-job.yaml", "ci-matrix.yml"} <= files
    for name, words in commands:
        if words[:1] == ["merge"]:
            merged = shards.build_merge_parser().parse_args(words[1:])
            assert merged.parts and merged.out, (name, words)
            continue
        parsed = cli.build_parser().parse_args(words)
        assert parsed.shard is not None and parsed.seed is not None, (name, words)
        shards.parse_shard(parsed.shard)
    for path in EXAMPLES.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "wheel" in text, f"{path.name} does not install from the wheel or the wheelhouse"
