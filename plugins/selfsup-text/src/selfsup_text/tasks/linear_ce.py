"""Chunked linear + cross entropy: a language model's output layer and its loss in one pass.

The loss of a causal LM is ``cross_entropy(h W^T + b, y)`` over N = B*T positions and a vocabulary
of V tokens. Computed the plain way, the ``[N, V]`` logits are written in the autocast dtype, copied
to float32, log-softmaxed, and their gradient is written again in both dtypes: several passes over
N*V numbers (16.7 million for 16 windows of 128 tokens and 8,192 tokens) that do not fit in a CPU's
cache. Here the positions are processed ``chunk`` rows at a time: a chunk's logits are computed,
turned into its loss (one fused float32 ``log_softmax``), its accuracy and, in the same pass, its
logit gradient ``(softmax - onehot) / n``, kept in the compute dtype. Every ``group`` rows (by
default 2^24 / V: 32 MB of bf16 logit gradients) the kept gradients are multiplied into the
gradients of ``h`` and ``W`` with two large matmuls; the float32 ``[V, D]`` weight gradient is
accumulated once per group, not once per chunk (on a 2-core CPU that mixed-dtype addition cost
as much as the matmul itself at 128-row chunks: docs/benchmarks.md, CPU efficiency). The
backward pass only scales those stored gradients. This is the "fused linear cross entropy" of Liger
Kernel (Hsu et al., Liger Kernel: Efficient Triton Kernels for LLM Training, arXiv:2410.10989),
here in plain torch for the CPU.

The result equals ``F.cross_entropy(F.linear(h, W, b).float(), y, ignore_index=-100)`` with the
matmuls in the same dtype, up to the order of summation (tests).
"""

from __future__ import annotations

import torch

IGNORE = -100
#: Logit gradients kept at once by default: 2^24 (32 MB in bf16), i.e. ``group`` = 2^24 / V rows.
GROUP_ELEMENTS = 2**24


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk: int, group: int, dtype: torch.dtype):  # type: ignore[override]
        # hidden [N, D], weight [V, D], bias [V] or None, targets [N] (IGNORE = no loss)
        n, grads = hidden.shape[0], any(ctx.needs_input_grad[:3])
        valid_all = targets != IGNORE  # [N]
        count = valid_all.sum().clamp(min=1).to(torch.float32)
        w = weight.to(dtype)  # [V, D]
        b = bias.to(dtype) if bias is not None else None
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device) if grads else None
        grad_w = grad_b = None
        if grads and bias is not None:
            grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=hidden.device)
        for first in range(0, n, group):  # a group's logit gradients are kept, then two matmuls of the group
            hg = hidden[first : first + group].to(dtype)  # [G, D]
            # [G, V] logit gradients in the compute dtype (what the plain head's backward would multiply)
            g_group = torch.empty((hg.shape[0], weight.shape[0]), dtype=dtype, device=hidden.device) if grads else None
            for start in range(0, hg.shape[0], chunk):
                h = hg[start : start + chunk]  # [C, D]
                logits = h @ w.T  # [C, V] in the compute dtype, as the plain head would give them
                if b is not None:
                    logits = logits + b
                rows = slice(first + start, first + start + h.shape[0])
                t, valid = targets[rows], valid_all[rows]  # [C]
                safe = t.clamp(min=0)[:, None]  # [C, 1]
                logits = logits.float()  # argmax is vectorised for float32 on a CPU, not for bf16 (8x slower)
                correct += ((logits.argmax(dim=-1) == t) & valid).sum()
                logp = torch.log_softmax(logits, dim=-1)  # [C, V], one fused pass
                loss -= (logp.gather(1, safe)[:, 0] * valid).sum()
                if grads:
                    g = logp.exp_()  # softmax, in place of the log-probabilities
                    g.scatter_add_(1, safe, torch.full_like(safe, -1, dtype=g.dtype))
                    g.mul_((valid.to(g.dtype) / count)[:, None])  # [C, V] d loss / d logits
                    g_group[start : start + h.shape[0]] = g  # rounded to the compute dtype
                    if grad_b is not None:
                        grad_b += g.sum(dim=0)
            if grads:
                grad_h[first : first + hg.shape[0]] = g_group @ w  # [G, D]
                part = g_group.T @ hg  # [V, D], one rounding to the compute dtype per group
                grad_w = part.to(torch.float32) if grad_w is None else grad_w.add_(part)
        if grads and grad_w is None:  # no rows
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=hidden.device)
        ctx.save_for_backward(*(x for x in (grad_h, grad_w, grad_b) if x is not None))
        ctx.has = (grad_h is not None, grad_b is not None)
        ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype if bias is not None else None)
        accuracy = correct / count
        ctx.mark_non_differentiable(accuracy)
        return loss / count, accuracy

    @staticmethod
    def backward(ctx, grad_loss, _grad_accuracy):  # type: ignore[override]
        if not ctx.has[0]:
            return None, None, None, None, None, None, None
        saved = list(ctx.saved_tensors)
        grad_h, grad_w = saved[0], saved[1]
        grad_b = saved[2] if ctx.has[1] else None
        h_dtype, w_dtype, b_dtype = ctx.dtypes
        return (
            (grad_h * grad_loss).to(h_dtype),
            (grad_w * grad_loss).to(w_dtype),
            (grad_b * grad_loss).to(b_dtype) if grad_b is not None else None,
            None, None, None, None,
        )


def linear_cross_entropy(
    hidden: torch.Tensor,  # [..., D]
    weight: torch.Tensor,  # [V, D]
    targets: torch.Tensor,  # [...], IGNORE (-100) where no loss
    bias: torch.Tensor | None = None,  # [V]
    *,
    chunk: int = 256,
    group: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean cross entropy, accuracy)`` over the non-ignored targets of ``hidden @ weight.T + bias``;
    the matmuls run in the autocast dtype when autocast is on (as the plain head would), the
    softmax in float32. The accuracy carries no gradient. ``chunk``: rows whose float32 logits are
    formed at once; ``group``: rows whose logit gradients are kept (in the compute dtype) for the two
    gradient matmuls, default :data:`GROUP_ELEMENTS` / V rows (at least ``chunk``)."""
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
    if group is None:
        group = max(chunk, GROUP_ELEMENTS // weight.shape[0])
    with torch.autocast(device, enabled=False):
        return _LinearCrossEntropy.apply(
            hidden.reshape(-1, hidden.shape[-1]), weight, bias, targets.reshape(-1), chunk, group, dtype
        )
