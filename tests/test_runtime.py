"""Seeds, threads and the device switch."""

import pytest
import torch

from course_utils.helpers.runtime import configure_threads, device, seed_everything


def test_seed_everything_makes_runs_repeat():
    seed_everything(123)
    first = torch.randn(5)
    seed_everything(123)
    assert torch.equal(first, torch.randn(5))


def test_threads_follow_environment(monkeypatch):
    monkeypatch.setenv("COURSE_THREADS", "1")
    assert configure_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("COURSE_THREADS", "many")
    with pytest.raises(ValueError, match="COURSE_THREADS must be a positive integer, got 'many'"):
        configure_threads()


def test_default_device_is_cpu(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.delenv("COURSE_REQUIRE_CUDA", raising=False)
    assert device() == torch.device("cpu")


def test_unknown_device_is_rejected(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="COURSE_DEVICE must be one of"):
        device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the CPU-only failure path")
def test_cuda_requested_without_cuda_fails_loudly(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="COURSE_DEVICE=cuda but torch.cuda.is_available"):
        device()
    monkeypatch.setenv("COURSE_DEVICE", "auto")
    monkeypatch.setenv("COURSE_REQUIRE_CUDA", "1")
    with pytest.raises(
        RuntimeError, match="COURSE_REQUIRE_CUDA=1 but the course would run on 'cpu'"
    ):
        device()
