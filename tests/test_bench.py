"""course_utils.benchmark.bench: a smoke run in fresh processes, skips, CSV/plot output, argument checks."""

from __future__ import annotations

import csv
import re
import subprocess

import pytest
import torch

from course_utils import flash, flash_fast
from course_utils.benchmark import bench, bench_report, cli, learner_method
from course_utils.benchmark.bench import BenchCase, estimated_naive_bytes, run_case


@pytest.mark.parametrize(
    "method, module, name",
    [
        ("naive", flash, "naive_attention"),
        ("textbook", flash, "flash_attention"),
        ("tiled", flash_fast, "flash_attention"),
    ],
)
def test_each_method_runs_its_library_function(monkeypatch, method, module, name):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 20, 8, generator=generator, dtype=torch.float64) for _ in range(3))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    for causal in (False, True):
        fn = bench._method_fn(BenchCase(method, "forward", causal, 20, block_q=8, block_k=8))
        assert torch.allclose(fn(q, k, v), sdpa(q, k, v, is_causal=causal))
    calls = []
    original = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *args: calls.append(args) or original(*args))
    bench._method_fn(BenchCase(method, "forward", False, 20))(q, k, v)
    assert len(calls) == 1


def test_main_writes_table_csv_and_plot(tmp_path, capsys):
    code = cli.main(
        ["--sizes", "128", "256", "--methods", "tiled", "--modes", "forward", "--causal", "no",
         "--repeats", "1", "--threads", "1", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "one fresh process per case" in printed and "extra MiB" in printed
    with open(tmp_path / "bench.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["method"], row["n"], row["status"]) for row in rows] == [
        ("tiled", "128", "ok"),
        ("tiled", "256", "ok"),
    ]
    for row in rows:
        assert float(row["time_s"]) > 0 and float(row["extra_peak_mib"]) >= 0
        assert row["memory_method"].startswith("VmHWM")  # Linux: the precise method
    assert (tmp_path / "bench.png").stat().st_size > 1000


def test_summary_reports_the_headline_ratios():
    rows = [
        {"method": m, "mode": "forward", "causal": c, "n": 4096, "status": "ok", "time_s": t}
        for m, c, t in (
            ("tiled", False, 1.0),
            ("sdpa", False, 0.8),
            ("naive", False, 2.0),
            ("tiled", True, 0.5),
        )
    ]
    rows.append(dict(rows[0], method="textbook", time_s=3.0))
    summary = "\n".join(bench_report.summarize(rows))
    assert "tiled/sdpa time 1.25x" in summary and "naive/tiled time 2.00x" in summary
    assert "textbook/tiled time 3.00x" in summary
    assert "non-causal/causal time 2.00x" in summary


def test_headline_ratios_use_the_best_run_and_show_the_median():
    def row(causal, best, median):
        return {"method": "tiled", "mode": "forward", "causal": causal, "n": 8192,
                "status": "ok", "time_s": median, "time_min_s": best, "cpu_time_s": 2 * median}  # fmt: skip

    # one noisy causal median (0.41 s) must not hide a 1.9x best-time speedup
    summary = "\n".join(bench_report.summarize([row(False, 0.57, 0.60), row(True, 0.30, 0.41)]))
    assert "non-causal/causal time 1.90x (median 1.46x, cpu 1.46x)" in summary


def test_naive_is_skipped_above_the_memory_cap():
    case = BenchCase("naive", "forward", False, 16384, heads=4)
    assert estimated_naive_bytes(case) == 2 * 4 * 16384 * 16384 * 4  # scores + weights, fp32
    row = run_case(case, memory_cap_mib=1024)
    assert row["status"] == "skipped" and "memory-cap" in row["note"]


def test_a_failing_child_becomes_an_error_row(monkeypatch):
    def crashing_child(command, **kwargs):
        return subprocess.CompletedProcess(command, -9, stdout="", stderr="Killed\n")

    monkeypatch.setattr(bench.subprocess, "run", crashing_child)
    row = run_case(BenchCase("tiled", "forward", False, 64))
    assert row["status"] == "error" and "child exited -9: Killed" in row["note"]


def test_what_a_learners_function_raises_while_timed_is_shown_escaped(monkeypatch):
    def shouting_child(command, **kwargs):
        stderr = "Traceback ...\nValueError: \x1b]0;pwned\x07\x1b[2Jboom\n"
        return subprocess.CompletedProcess(command, 1, stdout="", stderr=stderr)

    monkeypatch.setattr(bench.subprocess, "run", shouting_child)
    row = run_case(BenchCase("mine", "forward", False, 64, function="m:f"))
    assert row["note"] == "child exited 1: ValueError: \\x1b]0;pwned\\x07\\x1b[2Jboom"


def test_triton_is_skipped_with_a_reason_where_unavailable():
    from course_utils import flash_triton

    if flash_triton.unavailable_reason("cuda") is None:
        pytest.skip("triton can run here")
    row = run_case(BenchCase("triton", "forward", False, 256, device="cpu"))
    assert row["status"] == "skipped" and row["note"]


@pytest.mark.parametrize(
    "settings, needle",
    [
        ({"method": "fast"}, "method must be one of"),
        ({"mode": "sideways"}, "mode must be one of"),
        ({"n": 0}, "n must be a positive int"),
        ({"dtype": "int32"}, "dtype must be"),
    ],
)
def test_bad_cases_are_rejected(settings, needle):
    arguments = {"method": "tiled", "mode": "forward", "causal": False, "n": 128} | settings
    with pytest.raises(ValueError, match=needle):
        BenchCase(**arguments)


def test_command_line_rejects_bad_sizes():
    with pytest.raises(SystemExit):
        cli.parse_args(["--sizes", "0"])


def test_the_rows_record_the_tile_sizes_actually_used():
    """flash.tile_sizes decides them: clamped to n on the CPU, 64 for the GPU kernel, none untiled."""
    assert bench.tile_sizes_used(BenchCase("tiled", "forward", False, 100)) == (100, 100)
    assert bench.tile_sizes_used(BenchCase("tiled", "forward", False, 2048, block_q=256)) == (
        256,
        512,
    )
    assert bench.tile_sizes_used(BenchCase("triton", "forward", False, 100)) == (64, 64)
    assert bench.tile_sizes_used(BenchCase("sdpa", "forward", False, 100)) == (None, None)
    row = bench._row(BenchCase("textbook", "forward", True, 40, block_q=8), "skipped", "why")
    assert (row["block_q"], row["block_k"], row["note"]) == (8, 40, "why")


# ----------------------------------------------------------------------------------------------
# A learner's own method: course-bench --method NAME=MODULE:FUNCTION

LEARNER_MODULE = """
import math
import torch


def tiled(q, k, v, causal=False):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        future = torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def without_causal(q, k, v):
    return tiled(q, k, v)


def unscaled(q, k, v):  # the classic mistake: no 1/sqrt(d)
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v


def shouts(q, k, v):
    raise ValueError("\\x1b[31mred\\x1b[0m\\nand a second line")


def detached(q, k, v):
    return tiled(q.detach(), k.detach(), v.detach())


def wrong_shape(q, k, v):
    return tiled(q, k, v)[..., :-1, :]


not_a_function = 3
"""


@pytest.fixture
def learner_file(tmp_path):
    path = tmp_path / "my_attention.py"
    path.write_text(LEARNER_MODULE)
    return path


@pytest.mark.parametrize(
    "text, needle",
    [
        ("mine", "expected NAME=MODULE:FUNCTION"),
        ("mine=my_attention", "expected NAME=MODULE:FUNCTION"),
        ("=my_attention:tiled", "expected NAME=MODULE:FUNCTION"),
        ("mine=my_attention:", "expected NAME=MODULE:FUNCTION"),
        ("tiled=my_attention:tiled", "NAME 'tiled' is one of the course's methods"),
        ("1st=my_attention:tiled", "NAME must be a letter then"),
        ("mine=my attention:tiled", "MODULE must be a module name"),
        ("mine=my_attention:tiled-fast", "FUNCTION must be a Python name"),
        ("m\x1b[2J=a:b", "got 'm\\\\x1b[2J'"),
    ],
)
def test_a_malformed_method_spec_is_refused_by_the_parser(text, needle, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--method", text])
    error = capsys.readouterr().err
    assert needle in error and "\x1b" not in error


def test_method_names_are_unique_and_cuda_is_refused_without_a_gpu(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--method", "a=m:f", "--method", "a=m:g"])
    assert "each NAME once, got a more than once" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            cli.parse_args(["--device", "cuda"])
        assert "--device cuda: CUDA is not available here" in capsys.readouterr().err


def test_loading_names_what_is_missing(learner_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert learner_method.load_function(f"{learner_file}:tiled").__name__ == "tiled"
    assert learner_method.load_function("my_attention:tiled").__name__ == "tiled"  # from the folder
    for spec, needle in [
        ("my_attention:missing", "'my_attention' has no function 'missing'"),
        ("my_attention:not_a_function", "my_attention:not_a_function is a int, not a function"),
        ("no_such_module:f", "cannot import 'no_such_module': ModuleNotFoundError"),
        (f"{tmp_path / 'absent.py'}:f", "there is no file"),
    ]:
        with pytest.raises(learner_method.LearnerMethodError, match=re.escape(needle)):
            learner_method.load_function(spec)


@pytest.mark.parametrize(
    "function, needle",
    [
        ("unscaled", "wrong output (causal=False, q, k, v of shape (1, 2, 100, 16), float32): "
                     "max |mine - SDPA in float64| = "),
        ("shouts", "raised ValueError: \\x1b[31mred\\x1b[0m\\nand a second line"),
        ("detached", "raised RuntimeError: element 0 of tensors does not require grad"),
        ("wrong_shape", "returned (1, 2, 99, 16), expected a tensor of shape (1, 2, 100, 16)"),
    ],
)  # fmt: skip
def test_a_wrong_function_is_refused_with_the_reason(learner_file, function, needle):
    with pytest.raises(learner_method.LearnerMethodError) as raised:
        learner_method.check_against_sdpa(
            "mine", f"{learner_file}:{function}", ["forward", "backward"], 16, "float32", "cpu"
        )
    assert needle in str(raised.value) and "\x1b" not in str(raised.value)


def test_a_right_function_passes_and_says_whether_it_takes_causal(learner_file):
    for function, causal in (("tiled", True), ("without_causal", False)):
        result = learner_method.check_against_sdpa(
            "mine", f"{learner_file}:{function}", ["forward", "backward"], 16, "float32", "cpu"
        )
        assert result == {"takes_causal": causal}


def test_the_learners_method_is_timed_beside_the_courses(learner_file, tmp_path, capsys):
    code = cli.main(
        ["--sizes", "96", "--methods", "sdpa", "--method", f"mine={learner_file}:without_causal",
         "--modes", "forward", "--repeats", "1", "--threads", "1", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "mine has no `causal` parameter: its causal cases are left out" in printed
    assert "n=   96 forward        : mine/sdpa time" in printed
    with open(tmp_path / "out" / "bench.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["method"], row["causal"], row["status"]) for row in rows] == [
        ("sdpa", "False", "ok"),
        ("mine", "False", "ok"),
        ("sdpa", "True", "ok"),
    ]
    assert rows[1]["function"] == f"{learner_file}:without_causal"
    assert (tmp_path / "out" / "bench.png").stat().st_size > 1000


def test_a_wrong_function_stops_the_command_before_anything_is_timed(
    learner_file, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(cli, "run_cases", lambda *args, **kwargs: pytest.fail("a case was timed"))
    code = cli.main(
        ["--sizes", "96", "--method", f"mine={learner_file}:unscaled", "--out", str(tmp_path)]
    )
    error = capsys.readouterr().err
    assert code == 2
    assert f"course-bench: error: --method mine={learner_file}:unscaled: wrong output" in error
    assert error.rstrip().endswith("nothing was timed") and not (tmp_path / "bench.csv").exists()


def test_a_learners_case_without_causal_is_not_built():
    learner = learner_method.LearnerMethod("mine", "m", "f", takes_causal=False)
    cases = bench.build_cases([64], ["sdpa"], ["forward"], [False, True], [learner])
    assert [(case.method, case.causal, case.function) for case in cases] == [
        ("sdpa", False, ""),
        ("mine", False, "m:f"),
        ("sdpa", True, ""),
    ]
    with pytest.raises(ValueError, match="a learner's method needs a name of its own"):
        BenchCase("sdpa", "forward", False, 64, function="m:f")
