"""The Triton kernel of notebook 07, run by Triton's CPU interpreter (TRITON_INTERPRET=1).

No GPU is needed: the interpreter executes the kernel body with numpy, block by block, so these
tests check the kernel's logic — loads, masks, online softmax, causal block skipping, stores —
against torch's SDPA on every machine that has the ``triton`` package (``make test`` installs
it). Speed is a GPU matter (``course-bench --device cuda --methods triton sdpa``).

The interpreter must be switched on before the kernel is defined, so each check runs in a fresh
Python process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None,
    reason="the `triton` package is not installed (make test installs it on Linux x86-64)",
)


def run_interpreted(body: str) -> dict:
    """Run ``body`` with TRITON_INTERPRET=1 in a fresh process; it must print one JSON line."""
    script = "import json, torch\nfrom course_utils import flash_triton\n" + textwrap.dedent(body)
    environment = os.environ | {"TRITON_INTERPRET": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_kernel_matches_sdpa_in_the_interpreter():
    errors = run_interpreted(
        """
        sdpa = torch.nn.functional.scaled_dot_product_attention
        generator = torch.Generator().manual_seed(0)
        errors = {}
        # (n_q, n_k, d, block_q, block_k): ragged last blocks, n_q != n_k, blocks of unequal size
        for n_q, n_k, dim, block_q, block_k in [
            (100, 100, 64, 32, 32), (64, 64, 16, 16, 16), (77, 130, 32, 16, 32), (130, 77, 32, 32, 16)
        ]:
            q = torch.randn(2, 2, n_q, dim, generator=generator)
            k = torch.randn(2, 2, n_k, dim, generator=generator)
            v = torch.randn(2, 2, n_k, dim, generator=generator)
            for causal in (False, True):
                visible = torch.ones(n_q, n_k, dtype=torch.bool).tril() if causal else None
                expected = sdpa(q.double(), k.double(), v.double(), attn_mask=visible)
                out = flash_triton.triton_flash_attention(q, k, v, causal, block_q, block_k)
                assert out.shape == q.shape and out.dtype == torch.float32
                errors[f"{n_q}x{n_k} d={dim} causal={causal}"] = (out.double() - expected).abs().max().item()
                half = flash_triton.triton_flash_attention(q.half(), k.half(), v.half(), causal, block_q, block_k)
                assert half.dtype == torch.float16
                errors[f"{n_q}x{n_k} d={dim} causal={causal} fp16"] = (half.double() - expected).abs().max().item()
        print(json.dumps(errors))
        """
    )
    assert len(errors) == 16
    for case, error in errors.items():
        # float32 uses IEEE dot products: rounding only. float16 inputs carry ~1e-3 relative error.
        assert error <= (3e-3 if case.endswith("fp16") else 1e-5), (case, error)


def test_kernel_rejects_what_it_cannot_compute():
    messages = run_interpreted(
        """
        q = torch.randn(1, 8, 24)
        messages = {}
        for name, call in {
            "head dim": lambda: flash_triton.triton_flash_attention(q, q, q),
            "block": lambda: flash_triton.triton_flash_attention(
                torch.randn(1, 8, 16), torch.randn(1, 8, 16), torch.randn(1, 8, 16), block_q=24
            ),
        }.items():
            try:
                call()
                messages[name] = "no error"
            except ValueError as error:
                messages[name] = str(error)
        print(json.dumps(messages))
        """
    )
    assert "d = d_v in (16, 32, 64, 128)" in messages["head dim"]
    assert "block_q must be a power of two >= 16, got 24" in messages["block"]


def test_the_interpreter_counts_as_available_but_the_course_device_does_not():
    """With TRITON_INTERPRET=1 the kernel runs on CPU tensors; otherwise a CPU run gets a reason."""
    reasons = run_interpreted(
        """
        print(json.dumps({"interpreted": flash_triton.unavailable_reason("cpu")}))
        """
    )
    assert reasons == {"interpreted": None}
    plain = subprocess.run(
        [sys.executable, "-c", "from course_utils import flash_triton as f; "
         "print(f.unavailable_reason('cpu'))"],
        capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"},
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() != "None"  # no CUDA here, or the course device is the CPU


def test_run_in_interpreter_is_what_the_notebook_shows_without_a_gpu():
    """Notebook 07 calls this where no GPU is present: the kernel runs and matches SDPA."""
    from course_utils import flash_triton

    errors = flash_triton.run_in_interpreter(n_q=40, n_k=56, heads=1, dim=16, block=16)
    assert set(errors) == {"causal=False", "causal=True"}
    assert all(error <= 1e-5 for error in errors.values()), errors
