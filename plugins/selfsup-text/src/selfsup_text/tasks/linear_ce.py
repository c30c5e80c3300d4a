"""Chunked linear + cross entropy: a language model's output layer and its loss in one pass.

The loss of a causal LM is ``cross_entropy(h W^T + b, y)`` over N = B*T positions and a vocabulary
of V tokens. Computed the plain way, the ``[N, V]`` logits are written in the autocast dtype, copied
to float32, log-softmaxed, and their gradient is written again in both dtypes: several passes over
N*V numbers (16.7 million for 16 windows of 128 tokens and 8,192 tokens) that do not fit in a CPU's
cache. Here the positions are processed ``chunk`` rows at a time: a chunk's logits are computed,
turned into its loss, its accuracy and, in the same pass, its logit gradient
``(softmax - onehot) / n``, which is multiplied straight into the gradients of ``h`` and ``W``. The
backward pass only scales those stored gradients. This is the "fused linear cross entropy" of Liger
Kernel (Hsu et al., Liger Kernel: Efficient Triton Kernels for LLM Training, arXiv:2410.10989),
here in plain torch for the CPU.

The result equals ``F.cross_entropy(F.linear(h, W, b).float(), y, ignore_index=-100)`` with the
matmuls in the same dtype, up to the order of summation (tests).
"""

from __future__ import annotations

import torch

IGNORE = -100


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk: int, dtype: torch.dtype):  # type: ignore[override]
        # hidden [N, D], weight [V, D], bias [V] or None, targets [N] (IGNORE = no loss)
        n, grads = hidden.shape[0], any(ctx.needs_input_grad[:3])
        valid_all = targets != IGNORE  # [N]
        count = valid_all.sum().clamp(min=1).to(torch.float32)
        w = weight.to(dtype)  # [V, D]
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device) if grads else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=hidden.device) if grads else None
        grad_b = None
        if grads and bias is not None:
            grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=hidden.device)
        for start in range(0, n, chunk):
            h = hidden[start : start + chunk].to(dtype)  # [C, D]
            logits = h @ w.T  # [C, V] in the compute dtype, as the plain head would give them
            if bias is not None:
                logits = logits + bias.to(dtype)
            logits = logits.float()
            t = targets[start : start + chunk]
            valid = valid_all[start : start + chunk]  # [C]
            safe = t.clamp(min=0)[:, None]  # [C, 1]
            lse = torch.logsumexp(logits, dim=-1)  # [C]
            loss += ((lse - logits.gather(1, safe)[:, 0]) * valid).sum()
            correct += ((logits.argmax(dim=-1) == t) & valid).sum()
            if grads:
                g = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
                g.scatter_add_(1, safe, torch.full_like(safe, -1, dtype=g.dtype))
                g.mul_((valid.to(g.dtype) / count)[:, None])  # [C, V] d loss / d logits
                g_low = g.to(dtype)
                grad_h[start : start + chunk] = g_low @ w  # [C, D]
                grad_w += g_low.T @ h  # [V, D]
                if grad_b is not None:
                    grad_b += g.sum(dim=0)
        ctx.save_for_backward(*(x for x in (grad_h, grad_w, grad_b) if x is not None))
        ctx.has = (grad_h is not None, grad_b is not None)
        ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype if bias is not None else None)
        accuracy = correct / count
        ctx.mark_non_differentiable(accuracy)
        return loss / count, accuracy

    @staticmethod
    def backward(ctx, grad_loss, _grad_accuracy):  # type: ignore[override]
        if not ctx.has[0]:
            return None, None, None, None, None, None
        saved = list(ctx.saved_tensors)
        grad_h, grad_w = saved[0], saved[1]
        grad_b = saved[2] if ctx.has[1] else None
        h_dtype, w_dtype, b_dtype = ctx.dtypes
        return (
            (grad_h * grad_loss).to(h_dtype),
            (grad_w * grad_loss).to(w_dtype),
            (grad_b * grad_loss).to(b_dtype) if grad_b is not None else None,
            None, None, None,
        )


def linear_cross_entropy(
    hidden: torch.Tensor,  # [..., D]
    weight: torch.Tensor,  # [V, D]
    targets: torch.Tensor,  # [...], IGNORE (-100) where no loss
    bias: torch.Tensor | None = None,  # [V]
    *,
    chunk: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean cross entropy, accuracy)`` over the non-ignored targets of ``hidden @ weight.T + bias``;
    the matmuls run in the autocast dtype when autocast is on (as the plain head would), the
    softmax in float32. The accuracy carries no gradient."""
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
    with torch.autocast(device, enabled=False):
        return _LinearCrossEntropy.apply(
            hidden.reshape(-1, hidden.shape[-1]), weight, bias, targets.reshape(-1), chunk, dtype
        )
