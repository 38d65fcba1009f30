"""course_utils.benchmark.bench: a smoke run in fresh processes, skips, CSV/plot output, argument checks."""

from __future__ import annotations

import csv
import subprocess

import pytest
import torch

from course_utils import flash, flash_fast
from course_utils.benchmark import bench, bench_report, cli
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
