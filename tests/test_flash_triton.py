"""The Triton kernels of notebook 07, run by Triton's CPU interpreter (TRITON_INTERPRET=1).

No GPU is needed: the interpreter executes the kernel bodies with numpy, block by block, so these
tests check the kernels' logic — loads, masks, online softmax, causal block skipping, the
log-sum-exp, the backward's recomputation of P, stores — against torch's SDPA and float64 autograd
on every machine that has the ``triton`` package (``make test`` installs it). Speed is a GPU matter
(``course-bench --device cuda --dtype float16 --methods triton sdpa``).

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


def test_backward_matches_float64_autograd_in_the_interpreter():
    """dQ, dK, dV of the two backward kernels equal float64 autograd of naive attention to 1e-4."""
    errors = run_interpreted(
        """
        from course_utils.flash import naive_attention
        generator = torch.Generator().manual_seed(1)
        errors = {}
        # (n_q, n_k, d, block_q, block_k): ragged last blocks, n_q != n_k both ways, unequal blocks
        for n_q, n_k, dim, block_q, block_k in [
            (100, 100, 64, 32, 32), (77, 130, 32, 16, 32), (130, 77, 32, 32, 16), (33, 33, 16, 16, 16)
        ]:
            q, grad_out = (torch.randn(2, 2, n_q, dim, generator=generator) for _ in range(2))
            k, v = (torch.randn(2, 2, n_k, dim, generator=generator) for _ in range(2))
            for causal in (False, True):
                inputs = [t.clone().requires_grad_(True) for t in (q, k, v)]
                out = flash_triton.triton_flash_attention(*inputs, causal, block_q, block_k)
                out.backward(grad_out)
                references = [t.double().requires_grad_(True) for t in (q, k, v)]
                expected = naive_attention(*references, causal)
                expected.backward(grad_out.double())
                case = f"{n_q}x{n_k} d={dim} causal={causal}"
                errors[case + " out"] = (out.double() - expected).abs().max().item()
                for name, mine, reference in zip("qkv", inputs, references):
                    assert mine.grad.dtype == torch.float32 and mine.grad.shape == mine.shape
                    errors[case + " d" + name] = (mine.grad.double() - reference.grad).abs().max().item()
        print(json.dumps(errors))
        """
    )
    assert len(errors) == 4 * 2 * 4
    for case, error in errors.items():
        assert error <= (1e-5 if case.endswith("out") else 1e-4), (case, error)


def test_backward_keeps_only_the_log_sum_exp_and_works_in_float16():
    """autograd saves q, k, v, O and one number per row, never (n, n); float16 gradients are close."""
    result = run_interpreted(
        """
        from course_utils.flash import naive_attention
        generator = torch.Generator().manual_seed(2)
        q, k, v, grad_out = (torch.randn(1, 2, 96, 32, generator=generator) for _ in range(4))
        saved = []
        inputs = [t.half().requires_grad_(True) for t in (q, k, v)]
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(tuple(t.shape)) or t, lambda t: t):
            out = flash_triton.triton_flash_attention(*inputs, True, 32, 32)
        out.backward(grad_out.half())
        references = [t.double().requires_grad_(True) for t in (q, k, v)]
        naive_attention(*references, True).backward(grad_out.double())
        errors = [(a.grad.double() - b.grad).abs().max().item() for a, b in zip(inputs, references)]
        print(json.dumps({"saved": saved, "dtypes": [str(t.grad.dtype) for t in inputs], "errors": errors}))
        """
    )
    assert sorted(map(tuple, result["saved"])) == [(2, 96)] + [(2, 96, 32)] * 4  # lse; q, k, v, out
    assert result["dtypes"] == ["torch.float16"] * 3
    assert max(result["errors"]) <= 2e-2, result["errors"]  # float16 inputs and outputs


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
    """Notebook 07 calls this where no GPU is present: the kernels run and match, forward and backward."""
    from course_utils import flash_triton

    errors = flash_triton.run_in_interpreter(n_q=40, n_k=56, heads=1, dim=16, block=16)
    assert set(errors) == {"causal=False", "causal=True"}
    for setting in errors.values():
        assert set(setting) == {"out", "dq", "dk", "dv"}
        assert setting["out"] <= 1e-5 and max(setting.values()) <= 1e-4, errors


def test_the_kernels_source_is_read_from_the_files():
    """What notebook 07 prints: the kernels with their decorator, read without running triton."""
    from course_utils import flash_triton

    for name in (
        "_flash_forward_kernel",
        "_flash_backward_dkdv_kernel",
        "_flash_backward_dq_kernel",
    ):
        source = flash_triton.kernel_source(name)
        assert source.startswith("@triton.jit\ndef " + name + "(") and "tl.store(" in source
    assert "dS = P ∘ (dP − D)" in flash_triton.kernel_source("_flash_backward_dq_kernel")
    assert flash_triton.kernel_loop_source().startswith("for k_start in range(0, k_end, BLOCK_K):")
    with pytest.raises(LookupError, match="_no_such_kernel is in neither"):
        flash_triton.kernel_source("_no_such_kernel")
