"""Optional: flash attention as fused Triton GPU kernels, forward and backward.

This module always imports, so that a notebook can ask whether the kernel can run here; the
kernels themselves are defined only when the ``triton`` package is installed, and they run only on
a CUDA GPU. Elsewhere :func:`unavailable_reason` says why, and :func:`triton_flash_attention`
raises a ``RuntimeError`` with that reason. Without a GPU, :func:`run_in_interpreter` still runs
the kernels, in Triton's CPU interpreter (slow, small sizes only), and compares the output with
torch's SDPA and the gradients with float64 autograd; :func:`kernel_loop_source` and
:func:`kernel_source` are the kernels' code as it stands in the files.

One program instance of the forward kernel handles one block of BLOCK_Q queries of one
(batch, head): it loads the query block once into on-chip memory (SRAM / registers) and streams key
and value blocks past it with the online softmax, exactly like ``course_utils.flash`` does with
torch operations — but scores never leave the chip, which is the whole point of flash attention on
a GPU. Besides the output it saves one number per query row, the log-sum-exp L = m + log l (in base
2), from which the backward kernels (``course_utils.flash_triton_backward``, two kernels, no
atomics: its docstring says why) recompute the probabilities tile by tile.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import os
import subprocess
import sys
import textwrap

import torch

from course_utils.flash import RecomputingAttention, check_flash_inputs, tile_sizes
from course_utils.flash_triton_backward import LOG2_E, triton_flash_backward

try:  # the kernel exists only where triton does
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the machine
    triton = None
    tl = None

TRITON_AVAILABLE = triton is not None
SUPPORTED_HEAD_DIMS = (16, 32, 64, 128)


def _interpreting() -> bool:
    """TRITON_INTERPRET=1 runs kernels on the CPU with numpy (slow; for testing the kernel logic)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def unavailable_reason(device: torch.device | str | None = None) -> str | None:
    """None when the Triton kernel can run on ``device`` (default: cuda), else a one-line reason."""
    if not TRITON_AVAILABLE:
        return "the `triton` package is not installed (it comes with CUDA builds of torch on Linux)"
    if _interpreting():
        return None
    if not torch.cuda.is_available():
        return "no CUDA GPU is available (torch.cuda.is_available() is False)"
    if device is not None and torch.device(device).type != "cuda":
        return f"the course runs on {torch.device(device).type!r}; set COURSE_DEVICE=cuda to use the GPU"
    return None


def require_triton(device: torch.device | str | None = None) -> None:
    reason = unavailable_reason(device)
    if reason:
        raise RuntimeError(f"the Triton flash kernel cannot run here: {reason}")


if TRITON_AVAILABLE:

    @triton.jit
    def _flash_forward_kernel(
        Q,
        K,
        V,
        Out,
        LSE2,
        stride_q_batch,
        stride_q_row,
        stride_k_batch,
        stride_k_row,
        stride_v_batch,
        stride_v_row,
        stride_o_batch,
        stride_o_row,
        n_q,
        n_k,
        scale_log2,
        HEAD_DIM: tl.constexpr,
        BLOCK_Q: tl.constexpr,
        BLOCK_K: tl.constexpr,
        CAUSAL: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        q_block = tl.program_id(0)
        batch_head = tl.program_id(1)
        rows = q_block * BLOCK_Q + tl.arange(0, BLOCK_Q)
        features = tl.arange(0, HEAD_DIM)
        key_offsets = tl.arange(0, BLOCK_K)
        row_ok = rows[:, None] < n_q
        queries = tl.load(
            Q + batch_head * stride_q_batch + rows[:, None] * stride_q_row + features[None, :],
            mask=row_ok,
            other=0.0,
        )
        row_max = tl.full([BLOCK_Q], float("-inf"), tl.float32)  # m, in log2 units
        row_sum = tl.zeros([BLOCK_Q], tl.float32)  # l
        acc = tl.zeros([BLOCK_Q, HEAD_DIM], tl.float32)
        k_end = n_k
        if CAUSAL:  # key blocks after this query block's last row are skipped entirely
            k_end = tl.minimum(n_k, (q_block + 1) * BLOCK_Q)
        for k_start in range(0, k_end, BLOCK_K):
            cols = k_start + key_offsets
            col_ok = cols < n_k
            keys_t = tl.load(  # (HEAD_DIM, BLOCK_K): Kᵀ of this key block
                K + batch_head * stride_k_batch + cols[None, :] * stride_k_row + features[:, None],
                mask=col_ok[None, :],
                other=0.0,
            )
            # s = q·k / √d, times log2 e so that exp2 can replace exp
            scores = tl.dot(queries, keys_t, input_precision=PRECISION) * scale_log2
            visible = col_ok[None, :]
            if CAUSAL:
                visible = visible & (cols[None, :] <= rows[:, None])
            scores = tl.where(visible, scores, float("-inf"))
            new_max = tl.maximum(row_max, tl.max(scores, 1))  # m' = max(m, max_j s_j)
            probabilities = tl.exp2(scores - new_max[:, None])  # P̃ = exp(S − m')
            correction = tl.exp2(row_max - new_max)  # exp(m − m')
            row_sum = row_sum * correction + tl.sum(probabilities, 1)  # l' = l·exp(m − m') + Σ P̃
            values = tl.load(
                V + batch_head * stride_v_batch + cols[:, None] * stride_v_row + features[None, :],
                mask=col_ok[:, None],
                other=0.0,
            )
            # acc' = acc · exp(m − m') + P̃ V
            acc = acc * correction[:, None] + tl.dot(
                probabilities.to(values.dtype), values, input_precision=PRECISION
            )
            row_max = new_max
        acc = acc / row_sum[:, None]  # o = acc / l
        tl.store(
            Out + batch_head * stride_o_batch + rows[:, None] * stride_o_row + features[None, :],
            acc.to(Out.dtype.element_ty),
            mask=row_ok,
        )
        # L·log2 e = m + log2 l: the log-sum-exp in base 2, all the backward pass needs of P
        tl.store(LSE2 + batch_head * n_q + rows, row_max + tl.log2(row_sum), mask=rows < n_q)


def _triton_forward(queries, keys, values, causal: bool, block_q: int, block_k: int):
    """Launch the forward kernel on (B·H, n, d) tensors; returns out and L·log2 e (B·H, n_q)."""
    n_q, n_k, head_dim = queries.shape[-2], keys.shape[-2], queries.shape[-1]
    out = torch.zeros_like(queries)  # no keys at all: a zero output
    lse_log2 = torch.full(queries.shape[:-1], -math.inf, device=queries.device)
    if n_q == 0 or n_k == 0:
        return out, lse_log2
    grid = (triton.cdiv(n_q, block_q), queries.shape[0])
    _flash_forward_kernel[grid](
        queries,
        keys,
        values,
        out,
        lse_log2,
        queries.stride(0),
        queries.stride(1),
        keys.stride(0),
        keys.stride(1),
        values.stride(0),
        values.stride(1),
        out.stride(0),
        out.stride(1),
        n_q,
        n_k,
        LOG2_E / math.sqrt(head_dim),
        HEAD_DIM=head_dim,
        BLOCK_Q=block_q,
        BLOCK_K=block_k,
        CAUSAL=causal,
        PRECISION="ieee" if queries.dtype == torch.float32 else "tf32",
    )
    return out, lse_log2


def triton_flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    block_q: int | None = None,
    block_k: int | None = None,
) -> torch.Tensor:
    """Fused flash attention on the GPU, forward and backward: q, k, v (..., n, d), d in 16/32/64/128.

    Differentiable: the backward kernels recompute the probabilities from the saved log-sum-exp.
    ``block_q`` and ``block_k`` (default 64) are powers of two >= 16 (``flash.tile_sizes``).

    float32 inputs use full-precision (IEEE) dot products, not TF32, so the result matches
    ``torch.nn.functional.scaled_dot_product_attention`` to ~1e-6.
    """
    require_triton(q.device)

    check_flash_inputs(q, k, v, causal)
    n_q, n_k = q.shape[-2], k.shape[-2]
    block_q, block_k = tile_sizes(n_q, n_k, block_q, block_k, gpu_kernel=True)
    head_dim = q.shape[-1]
    if head_dim not in SUPPORTED_HEAD_DIMS or v.shape[-1] != head_dim:
        raise ValueError(
            f"the Triton kernel needs d = d_v in {SUPPORTED_HEAD_DIMS}, got q {tuple(q.shape)} "
            f"and v {tuple(v.shape)}; use course_utils.flash.flash_attention instead"
        )
    # (B·H, n, d), contiguous: the layout the kernels address
    queries, keys, values = (t.reshape(-1, t.shape[-2], head_dim).contiguous() for t in (q, k, v))
    out = RecomputingAttention.apply(
        _triton_forward, triton_flash_backward, queries, keys, values, causal, block_q, block_k
    )  # saves q, k, v, out and L·log2 e; the backward kernels recompute P from them
    return out.reshape(q.shape)


def compare_with_sdpa(
    n: int = 4096,
    batch: int = 1,
    heads: int = 4,
    dim: int = 64,
    causal: bool = False,
    dtype: torch.dtype = torch.float32,
    repeats: int = 20,
) -> dict[str, float]:
    """On the GPU: max |triton − SDPA| of the output and of dQ, dK, dV, and the median milliseconds
    of both, forward and forward+backward."""
    require_triton("cuda")
    generator = torch.Generator().manual_seed(0)
    q, k, v, grad_out = (
        torch.randn(batch, heads, n, dim, generator=generator).to("cuda", dtype) for _ in range(4)
    )
    sdpa = torch.nn.functional.scaled_dot_product_attention
    results = {}
    for name, attention in (
        ("triton", lambda a, b, c: triton_flash_attention(a, b, c, causal)),
        ("sdpa", lambda a, b, c: sdpa(a, b, c, is_causal=causal)),
    ):
        inputs = [tensor.clone().requires_grad_(True) for tensor in (q, k, v)]
        out = attention(*inputs)
        out.backward(grad_out)
        results[name] = (out.detach(), *(tensor.grad for tensor in inputs))

        def forward_and_backward(attention=attention, inputs=inputs):
            attention(*inputs).backward(grad_out)

        results[f"{name}_ms"] = _median_ms(lambda attention=attention: attention(q, k, v), repeats)
        results[f"{name}_backward_ms"] = _median_ms(forward_and_backward, repeats)
    differences = [
        (mine - theirs).abs().max().item()
        for mine, theirs in zip(results.pop("triton"), results.pop("sdpa"), strict=True)
    ]
    return {"max_abs_error": differences[0], "max_grad_error": max(differences[1:])} | results


def _median_ms(fn, repeats: int) -> float:
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop))
    return sorted(times)[len(times) // 2]


def _function_node(module_name: str, name: str) -> tuple[str, ast.FunctionDef]:
    """The source of ``module_name`` and the ``def`` of ``name`` in it (read, not imported by triton)."""
    module_source = inspect.getsource(sys.modules[module_name])
    for node in ast.walk(ast.parse(module_source)):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return module_source, node
    raise LookupError(f"{name} is not in {module_name}")


def kernel_source(name: str) -> str:
    """A kernel's source, as it stands in ``flash_triton`` or ``flash_triton_backward`` (``@triton.jit``
    and all; no triton needed to read it): ``kernel_source("_flash_backward_dkdv_kernel")``."""
    for module_name in (__name__, triton_flash_backward.__module__):
        try:
            module_source, node = _function_node(module_name, name)
        except LookupError:
            continue
        first_line = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
        lines = module_source.splitlines()[first_line - 1 : node.end_lineno]
        return textwrap.dedent("\n".join(lines)) + "\n"
    raise LookupError(f"{name} is in neither course_utils.flash_triton nor its backward module")


def kernel_loop_source() -> str:
    """The forward kernel's loop over key blocks, read from this file (no triton needed to read it)."""
    module_source, node = _function_node(__name__, "_flash_forward_kernel")
    loop = next(statement for statement in node.body if isinstance(statement, ast.For))
    return textwrap.dedent(ast.get_source_segment(module_source, loop, padded=True))


def run_in_interpreter(
    n_q: int = 80, n_k: int = 112, heads: int = 2, dim: int = 32, block: int = 32
) -> dict[str, dict[str, float]]:
    """Run the kernels in Triton's CPU interpreter, forward and backward, against float64 autograd.

    Returns, per causal setting, the max |error| of the output (against SDPA in float64) and of
    dQ, dK and dV (against float64 autograd through naive attention).

    TRITON_INTERPRET=1 has to be set before triton is imported, so the kernels run in a fresh
    Python process. The interpreter executes a kernel block by block with numpy: it checks the
    kernels' logic (loads, masks, online softmax, causal block skipping, recomputation from the
    log-sum-exp, stores), not their speed.
    """
    if not TRITON_AVAILABLE:
        raise RuntimeError(unavailable_reason())
    settings = {"n_q": n_q, "n_k": n_k, "heads": heads, "dim": dim, "block": block}
    finished = subprocess.run(
        [sys.executable, "-m", "course_utils.flash_triton", json.dumps(settings)],
        capture_output=True,
        text=True,
        env=os.environ | {"TRITON_INTERPRET": "1"},
        timeout=600,
    )
    if finished.returncode != 0:
        raise RuntimeError(f"the interpreted kernel failed: {finished.stderr.strip()[-2000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def _compare_in_this_process(n_q: int, n_k: int, heads: int, dim: int, block: int) -> dict:
    """The child of :func:`run_in_interpreter` (run with TRITON_INTERPRET=1)."""
    from course_utils.flash import naive_attention

    generator = torch.Generator().manual_seed(0)
    q, grad_out = (torch.randn(1, heads, n_q, dim, generator=generator) for _ in range(2))
    k, v = (torch.randn(1, heads, n_k, dim, generator=generator) for _ in range(2))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    errors = {}
    for causal in (False, True):
        visible = torch.ones(n_q, n_k, dtype=torch.bool).tril() if causal else None  # top-left
        expected = sdpa(q.double(), k.double(), v.double(), attn_mask=visible)
        inputs = [tensor.clone().requires_grad_(True) for tensor in (q, k, v)]
        out = triton_flash_attention(*inputs, causal, block, block)
        out.backward(grad_out)
        references = [tensor.double().requires_grad_(True) for tensor in (q, k, v)]
        naive_attention(*references, causal).backward(grad_out.double())
        errors[f"causal={causal}"] = {"out": (out.double() - expected).abs().max().item()} | {
            name: (mine.grad.double() - reference.grad).abs().max().item()
            for name, mine, reference in zip(("dq", "dk", "dv"), inputs, references, strict=True)
        }
    return errors


if __name__ == "__main__":
    print(json.dumps(_compare_in_this_process(**json.loads(sys.argv[1]))))
