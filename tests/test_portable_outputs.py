"""Strict nbval compares only what is the same on every machine, and every `make test` proves it.

solutions/ are recorded with the portable kernels and 2 threads; `make test` (and `make test-gpu`) run them
with the machine's own kernels (or CUDA) and 1 thread. These tests hold that arrangement in place: the stamp
in every solution, the Makefile's strict runs, the kernel-set switch itself, the GPU path's device logic and
sanitizer, and the claims report that decides each claim's margin.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from course_utils.helpers import kernel_sets, runtime
from course_utils.tooling import claims_report
from course_utils.tooling.record import RECORDING_METADATA

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


# --------------------------------------------------------------------------------------------------
# recorded one way, tested another


@pytest.mark.parametrize("path", SOLUTIONS, ids=[path.stem for path in SOLUTIONS])
def test_every_solution_is_recorded_with_the_portable_kernels(path):
    stamp = nbformat.read(path, as_version=4).metadata.get(RECORDING_METADATA)
    assert stamp == kernel_sets.RECORDING, (
        f"{path.name} was not recorded by `make record` (metadata {RECORDING_METADATA!r} is {stamp!r}, "
        f"expected {kernel_sets.RECORDING}): re-record it with make record NB=solutions/{path.name}"
    )


def test_recording_and_testing_differ_in_kernel_set_and_thread_count():
    assert kernel_sets.RECORDING["kernel_set"] != kernel_sets.TESTING["kernel_set"]
    assert kernel_sets.RECORDING["threads"] != kernel_sets.TESTING["threads"]
    assert kernel_sets.TESTING["threads"] == 1  # runtime's default, what a learner gets


def strict_recipe(target: str) -> str:
    dry_run = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), target],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry_run.returncode == 0, dry_run.stderr
    lines = [line for line in dry_run.stdout.splitlines() if "--nbval " in line]
    assert len(lines) == 1, dry_run.stdout
    return lines[0]


@pytest.mark.parametrize("target", ["test-notebooks", "test-gpu"])
def test_make_runs_strict_nbval_with_the_testing_kernels_and_threads(target):
    recipe = strict_recipe(target)
    for variable in kernel_sets.KERNEL_VARIABLES:
        assert f"-u {variable}" in recipe, f"{target} must drop {variable}: {recipe}"
    assert f"COURSE_THREADS={kernel_sets.TESTING['threads']}" in recipe
    assert "--nbval-sanitize-with tests/nbval_sanitize.cfg" in recipe and "solutions/" in recipe
    if target == "test-gpu":
        assert "COURSE_DEVICE=cuda" in recipe and "COURSE_REQUIRE_CUDA=1" in recipe


def test_kernel_set_environment_replaces_inherited_variables():
    base = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512", "HOME": "/h"}
    native = kernel_sets.environment("native", 1, base)
    assert native == {"HOME": "/h", "COURSE_THREADS": "1"}
    portable = kernel_sets.environment("default", 2, base)
    assert portable["ATEN_CPU_CAPABILITY"] == "default" and portable["COURSE_THREADS"] == "2"
    assert base["ATEN_CPU_CAPABILITY"] == "avx512"  # the caller's mapping is not changed
    with pytest.raises(ValueError, match=r"kernel_set must be one of .*got 'avx1024'"):
        kernel_sets.environment("avx1024", 1)
    with pytest.raises(ValueError, match="threads must be a positive int, got 0"):
        kernel_sets.environment("native", 0)


@pytest.mark.parametrize("kernel_set, expected", [("default", "DEFAULT"), ("avx2", "AVX2")])
def test_a_kernel_set_reaches_torch_in_a_new_process(kernel_set, expected):
    native = torch.backends.cpu.get_cpu_capability()
    if expected == "AVX2" and native not in ("AVX2", "AVX512"):
        pytest.skip(f"this CPU's own kernel set is {native}")
    code = (
        "import torch; from course_utils.helpers.runtime import configure_threads; "
        "print(torch.backends.cpu.get_cpu_capability(), configure_threads())"
    )
    env = kernel_sets.environment(kernel_set, 2)
    reported = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert reported.stdout.split() == [expected, "2"]


# --------------------------------------------------------------------------------------------------
# the GPU path, checked on the CPU


def test_cuda_is_chosen_when_asked_for_and_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setenv("COURSE_REQUIRE_CUDA", "1")
    for requested in ("cuda", "auto", " CUDA "):
        monkeypatch.setenv("COURSE_DEVICE", requested)
        assert runtime.device() == torch.device("cuda")
    assert runtime.describe().startswith(f"torch {torch.__version__} on cuda (Fake GPU)")


def test_require_cuda_refuses_to_fall_back_to_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("COURSE_DEVICE", "auto")
    monkeypatch.setenv("COURSE_REQUIRE_CUDA", "1")
    with pytest.raises(
        RuntimeError, match="COURSE_REQUIRE_CUDA=1 but the course would run on 'cpu'"
    ):
        runtime.device()
    monkeypatch.delenv("COURSE_REQUIRE_CUDA")
    assert runtime.device() == torch.device("cpu")


def sanitized(text: str) -> str:
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((ROOT / "tests" / "nbval_sanitize.cfg").read_text())
    for regex, replace in patterns:
        text = re.sub(regex, replace, text)
    return text


def test_a_cuda_tensor_repr_sanitizes_to_the_cpu_one():
    cpu = repr(torch.tensor([[1, 0], [1, 1]]))
    cuda = "tensor([[1, 0],\n        [1, 1]], device='cuda:0')"
    assert sanitized(cuda) == sanitized(cpu) == cpu
    with_dtype = "tensor([0.5000, 0.2500], device='cuda:0', dtype=torch.float64)"
    assert sanitized(with_dtype) == "tensor([0.5000, 0.2500], dtype=torch.float64)"


def test_seed_offset_shifts_every_seed(monkeypatch):
    monkeypatch.setenv("COURSE_SEED_OFFSET", "3")
    assert runtime.seed_everything(4) == 7
    shifted = torch.randn(3)
    monkeypatch.delenv("COURSE_SEED_OFFSET")
    runtime.seed_everything(7)
    assert torch.equal(shifted, torch.randn(3))
    monkeypatch.setenv("COURSE_SEED_OFFSET", "one")
    with pytest.raises(ValueError, match="COURSE_SEED_OFFSET must be an integer, got 'one'"):
        runtime.seed_everything(0)


# --------------------------------------------------------------------------------------------------
# the claims report


def recorded(source: str, tmp_path: Path, monkeypatch, namespace: dict | None = None) -> list[dict]:
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv(claims_report.CLAIMS_LOG, str(log))
    claims_report.install()
    exec(claims_report.rewrite_asserts(source, "nb#0"), dict(namespace or {}))  # noqa: S102
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_comparisons_record_their_figures_and_margin_without_stopping(tmp_path, monkeypatch):
    source = "accuracy = 0.93\nassert accuracy >= 0.95, 'too low'\nassert 0.1 < accuracy <= 1\n"
    first, second, third = recorded(source, tmp_path, monkeypatch)
    assert first["key"] == "nb#0:2" and first["held"] is False
    assert first["margin"] == pytest.approx(-0.02) and first["left"] == 0.93 and first["op"] == ">="
    assert first["source"] == "accuracy >= 0.95"
    assert (second["key"], second["op"], second["margin"]) == ("nb#0:3.0", "<", pytest.approx(0.83))
    assert (third["key"], third["op"], third["margin"]) == ("nb#0:3.1", "<=", pytest.approx(0.07))
    assert second["held"] and third["held"]


def test_and_all_and_other_asserts(tmp_path, monkeypatch):
    source = (
        "rates = {'noun': 0.99, 'verb': 0.96}\n"
        "assert all(rate >= 0.95 for rate in rates.values())\n"
        "assert rates['noun'] > 0.9 and torch.equal(ones, ones)\n"
        "assert not torch.isnan(ones).any()\n"
    )
    every, left, right, other = recorded(
        source, tmp_path, monkeypatch, {"torch": torch, "ones": torch.ones(2)}
    )
    assert every["margin"] == pytest.approx(0.01) and every["left"] == 0.96 and every["held"]
    assert left["key"] == "nb#0:3.0" and left["margin"] == pytest.approx(0.09)
    assert right["key"] == "nb#0:3.1" and right["margin"] is None and right["held"]
    assert other["margin"] is None and other["held"] and other["source"].startswith("not torch")


def test_asserts_inside_functions_and_tensors_as_figures(tmp_path, monkeypatch):
    source = "def check(x):\n    assert x < 1.0\n\nfor value in (torch.tensor(0.5), torch.tensor(2.0)):\n    check(value)\n"
    low, high = recorded(source, tmp_path, monkeypatch, {"torch": torch})
    assert low["margin"] == pytest.approx(0.5) and low["held"]
    assert high["margin"] == pytest.approx(-1.0) and not high["held"]
    rows = claims_report.summarise(
        [(claims_report.Run(Path("nb"), "native", 1, 0), [low, high], None)]
    )
    assert len(rows) == 1 and rows[0]["held"] == 1 and rows[0]["seen"] == 2
    assert rows[0]["margin"] == pytest.approx(-1.0)


def test_cells_without_asserts_or_in_ipython_syntax_are_left_alone():
    assert claims_report.rewrite_asserts("x = 1\nprint(x)\n", "k") == "x = 1\nprint(x)\n"
    assert claims_report.rewrite_asserts("%matplotlib inline\nassert x\n", "k").startswith("%")


def test_the_report_runs_a_notebook_under_a_kernel_set(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "import os, torch\nfrom course_utils.helpers.runtime import seed_everything, configure_threads\n"
            "seed = seed_everything(0)\nthreads = configure_threads()"
        ),
        nbformat.v4.new_code_cell("assert seed >= 1\nassert threads == 2\nassert seed < 0"),
    ]
    path = tmp_path / "99_tiny.ipynb"
    nbformat.write(notebook, path)
    result = claims_report.execute(claims_report.Run(path, "default", 2, 1), tmp_path)
    run, records, error = result
    assert error is None, error
    assert [(record["key"], record["held"]) for record in records] == [
        ("99_tiny#1:1", True),
        ("99_tiny#1:2", True),
        ("99_tiny#1:3", False),
    ]
    table = claims_report.format_table(claims_report.summarise([result]))
    assert "99_tiny#1:1" in table and "seed >= 1" in table
    assert os.environ.get(claims_report.CLAIMS_LOG) is None  # the parent's environment is untouched


def test_a_run_that_stops_is_run_again_and_says_so(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("assert 1 < 2\nraise RuntimeError('lost')")]
    path = tmp_path / "98_stops.ipynb"
    nbformat.write(notebook, path)
    run = claims_report.Run(path, "native", 1, 0)
    _, records, error = claims_report.execute(run, tmp_path, retries=1, cell_timeout=60)
    assert "RuntimeError: lost" in error and "(after 2 tries)" in error
    assert len(records) == 1  # the log of the last try only, not both
