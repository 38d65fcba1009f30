"""Optional: the backward pass of the Triton flash kernel, recomputing P from the saved log-sum-exp.

The forward kernel (``course_utils.flash_triton``) saves, besides the output O, one number per query
row: the log-sum-exp L_i = log Σ_j exp(s_ij). The backward pass never stores the probabilities; it
recomputes each tile's P = exp(S − L) from Q, K and L, exactly as ``course_utils.flash._backward``
does with torch operations. With upstream gradient dO:

    dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P ∘ (dP − D)  with  D_i = dO_i · O_i,
    dQ = dS K / √d,   dK = dSᵀ Q / √d.

**Two kernels, no atomics.** dK_j and dV_j are sums over query blocks; dQ_i is a sum over key
blocks. One kernel looping over query blocks per key block finishes dK_j and dV_j in registers,
but every program then adds a piece of dQ_i to the same rows of memory: that needs
``tl.atomic_add`` in float32, whose order of additions changes from run to run (the gradient is not
bit-for-bit reproducible) and which serialises programs on the same rows. So, as FlashAttention-2
and Triton's fused-attention tutorial do, there are two kernels, each the sole writer of its output:

* :func:`_flash_backward_dkdv_kernel` — one program per (key block, batch·head): the outer loop is
  over query blocks, dK_j and dV_j accumulate in registers and are stored once;
* :func:`_flash_backward_dq_kernel` — one program per (query block, batch·head): the loop is over
  key blocks, dQ_i accumulates in registers and is stored once.

The price is computing S and P twice (once per kernel): compute is cheap, memory traffic is not, and
each kernel writes its output exactly once, deterministically. D = rowsum(dO ∘ O) is one number
per row, computed by torch before the kernels.

Both kernels work in base 2 like the forward: exp(s − L) = 2^(s·log2 e − L·log2 e).
"""

from __future__ import annotations

import math

import torch

try:  # the kernels exist only where triton does
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the machine
    triton = None
    tl = None

LOG2_E = 1.4426950408889634  # exp(x) = 2^(x · log2 e): exp2 is the fast path on GPUs


if triton is not None:

    @triton.jit
    def _rows_of(batch_head, positions, n, HEAD_DIM: tl.constexpr):
        """Offsets of the rows ``positions`` of one batch·head of a contiguous (B·H, n, HEAD_DIM)."""
        features = tl.arange(0, HEAD_DIM)
        return batch_head * n * HEAD_DIM + positions[:, None] * HEAD_DIM + features[None, :]

    @triton.jit
    def _query_block(Q, GradOut, LSE2, Delta, batch_head, rows, n_q, HEAD_DIM: tl.constexpr):
        """Q_i, dO_i, L_i·log2 e and D_i of the query rows ``rows`` (zeros past n_q)."""
        row_ok = rows < n_q
        at = _rows_of(batch_head, rows, n_q, HEAD_DIM)
        queries = tl.load(Q + at, mask=row_ok[:, None], other=0.0)  # Q_i
        upstream = tl.load(GradOut + at, mask=row_ok[:, None], other=0.0)  # dO_i
        lse_log2 = tl.load(LSE2 + batch_head * n_q + rows, mask=row_ok, other=0.0)  # L·log2 e
        delta = tl.load(Delta + batch_head * n_q + rows, mask=row_ok, other=0.0)  # D_i = dO_i · O_i
        return queries, upstream, lse_log2, delta

    @triton.jit
    def _probabilities(
        queries, keys, lse_log2, rows, cols, n_q, n_k, scale_log2,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr,
    ):  # fmt: skip
        """P = exp(S − L) of one tile, recomputed in base 2; 0 where query i may not see key j."""
        # s·log2 e = (q·k / √d) · log2 e
        scores = tl.dot(queries, tl.trans(keys), input_precision=PRECISION) * scale_log2
        probabilities = tl.exp2(scores - lse_log2[:, None])  # 2^(s·log2 e − L·log2 e) = exp(s − L)
        visible = (rows[:, None] < n_q) & (cols[None, :] < n_k)  # both exist
        if CAUSAL:
            visible = visible & (cols[None, :] <= rows[:, None])  # and j <= i
        return tl.where(visible, probabilities, 0.0)

    @triton.jit
    def _flash_backward_dkdv_kernel(
        Q, K, V, GradOut, LSE2, Delta, GradK, GradV,
        n_q, n_k, scale, scale_log2,
        HEAD_DIM: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr,
    ):  # fmt: skip
        """One program per (key block j, batch·head): dK_j and dV_j, summed in registers over the
        query blocks that can see key block j, then stored once."""
        k_block, batch_head = tl.program_id(0), tl.program_id(1)
        cols = k_block * BLOCK_K + tl.arange(0, BLOCK_K)
        key_at, col_ok = _rows_of(batch_head, cols, n_k, HEAD_DIM), cols[:, None] < n_k
        keys = tl.load(K + key_at, mask=col_ok, other=0.0)  # K_j, stays on chip
        values = tl.load(V + key_at, mask=col_ok, other=0.0)  # V_j, stays on chip
        grad_k = tl.zeros([BLOCK_K, HEAD_DIM], tl.float32)
        grad_v = tl.zeros([BLOCK_K, HEAD_DIM], tl.float32)
        q_begin = 0
        if CAUSAL:  # query blocks that end before this key block's first key see none of it
            q_begin = (k_block * BLOCK_K // BLOCK_Q) * BLOCK_Q
        for q_start in range(q_begin, n_q, BLOCK_Q):
            rows = q_start + tl.arange(0, BLOCK_Q)
            queries, upstream, lse_log2, delta = _query_block(
                Q, GradOut, LSE2, Delta, batch_head, rows, n_q, HEAD_DIM
            )
            probabilities = _probabilities(
                queries, keys, lse_log2, rows, cols, n_q, n_k, scale_log2, CAUSAL, PRECISION
            )  # P = exp(S − L)
            # dV_j += Pᵀ dO_i
            probabilities_t = tl.trans(probabilities).to(upstream.dtype)  # Pᵀ
            grad_v += tl.dot(probabilities_t, upstream, input_precision=PRECISION)
            # dP = dO_i V_jᵀ
            grad_probabilities = tl.dot(upstream, tl.trans(values), input_precision=PRECISION)
            grad_scores = probabilities * (grad_probabilities - delta[:, None])  # dS = P ∘ (dP − D)
            # dK_j += dSᵀ Q_i / √d
            grad_scores_t = tl.trans(grad_scores).to(queries.dtype)  # dSᵀ
            grad_k += tl.dot(grad_scores_t, queries, input_precision=PRECISION)
        tl.store(GradK + key_at, (grad_k * scale).to(GradK.dtype.element_ty), mask=col_ok)
        tl.store(GradV + key_at, grad_v.to(GradV.dtype.element_ty), mask=col_ok)

    @triton.jit
    def _flash_backward_dq_kernel(
        Q, K, V, GradOut, LSE2, Delta, GradQ,
        n_q, n_k, scale, scale_log2,
        HEAD_DIM: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
        CAUSAL: tl.constexpr, PRECISION: tl.constexpr,
    ):  # fmt: skip
        """One program per (query block i, batch·head): dQ_i, summed over key blocks, stored once."""
        q_block, batch_head = tl.program_id(0), tl.program_id(1)
        rows = q_block * BLOCK_Q + tl.arange(0, BLOCK_Q)
        queries, upstream, lse_log2, delta = _query_block(  # stay on chip
            Q, GradOut, LSE2, Delta, batch_head, rows, n_q, HEAD_DIM
        )
        grad_q = tl.zeros([BLOCK_Q, HEAD_DIM], tl.float32)
        k_end = n_k
        if CAUSAL:  # key blocks after this query block's last row are skipped entirely
            k_end = tl.minimum(n_k, (q_block + 1) * BLOCK_Q)
        for k_start in range(0, k_end, BLOCK_K):
            cols = k_start + tl.arange(0, BLOCK_K)
            key_at, col_ok = _rows_of(batch_head, cols, n_k, HEAD_DIM), cols[:, None] < n_k
            keys = tl.load(K + key_at, mask=col_ok, other=0.0)  # K_j
            values = tl.load(V + key_at, mask=col_ok, other=0.0)  # V_j
            probabilities = _probabilities(
                queries, keys, lse_log2, rows, cols, n_q, n_k, scale_log2, CAUSAL, PRECISION
            )  # P = exp(S − L)
            # dP = dO_i V_jᵀ
            grad_probabilities = tl.dot(upstream, tl.trans(values), input_precision=PRECISION)
            grad_scores = probabilities * (grad_probabilities - delta[:, None])  # dS = P ∘ (dP − D)
            # dQ_i += dS K_j / √d
            grad_q += tl.dot(grad_scores.to(keys.dtype), keys, input_precision=PRECISION)
        query_at = _rows_of(batch_head, rows, n_q, HEAD_DIM)
        grad_q = (grad_q * scale).to(GradQ.dtype.element_ty)
        tl.store(GradQ + query_at, grad_q, mask=rows[:, None] < n_q)


def triton_flash_backward(
    q, k, v, out, lse_log2, grad_out, causal: bool, block_q: int, block_k: int
):
    """dQ, dK, dV of the Triton flash kernel from the saved output and log-sum-exp.

    q, out, grad_out (B·H, n_q, d) and k, v (B·H, n_k, d), all contiguous (the kernels address row
    r of batch·head b at (b · n + r) · d); lse_log2 (B·H, n_q), float32: the log-sum-exp in base 2,
    L·log2 e, as the forward kernel saves it. Launches :func:`_flash_backward_dkdv_kernel`, then
    :func:`_flash_backward_dq_kernel`.
    """
    n_q, n_k, head_dim = q.shape[-2], k.shape[-2], q.shape[-1]
    grad_out = grad_out.contiguous()
    # D_i = dO_i · O_i, one per query row (in float32, like the kernels' accumulators)
    delta = (grad_out.float() * out.float()).sum(dim=-1).contiguous()
    grad_q, grad_k, grad_v = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    if n_q == 0 or n_k == 0:
        return grad_q, grad_k, grad_v
    scale = 1.0 / math.sqrt(head_dim)
    settings = {
        "HEAD_DIM": head_dim,
        "BLOCK_Q": block_q,
        "BLOCK_K": block_k,
        "CAUSAL": causal,
        "PRECISION": "ieee" if q.dtype == torch.float32 else "tf32",
    }
    shared = (n_q, n_k, scale, scale * LOG2_E)
    _flash_backward_dkdv_kernel[(triton.cdiv(n_k, block_k), q.shape[0])](
        q, k, v, grad_out, lse_log2, delta, grad_k, grad_v, *shared, **settings
    )
    _flash_backward_dq_kernel[(triton.cdiv(n_q, block_q), q.shape[0])](
        q, k, v, grad_out, lse_log2, delta, grad_q, *shared, **settings
    )
    return grad_q, grad_k, grad_v
