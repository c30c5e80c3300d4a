"""Model FLOPs of a GPT-2-style decoder: the one definition the MFU figures of bench/gpu_check.py and
bench/cpu_efficiency.py use.

FLOPs per token of a training step (forward + backward), PaLM (Chowdhery et al. 2022, appendix B):
``6 N + 12 L d T`` with N the non-embedding parameters plus the output projection (each block's
attention 4 d^2 and MLP 8 d^2, and the V x d LM head; biases, norms and the position table left
out), L layers, d width, T context. The attention term counts the full T x T product, as PaLM does
(a causal mask halves the useful work; the kernels compute it all).
"""

from __future__ import annotations


def flop_parameters(layers: int, dim: int, vocab: int) -> int:
    """N of the formula: the blocks' matrices (12 d^2 each) plus the output projection (V d)."""
    return 12 * layers * dim * dim + vocab * dim


def flops_per_token(layers: int, dim: int, context: int, vocab: int) -> int:
    """Training FLOPs per token, forward + backward: ``6 N + 12 L d T``."""
    return 6 * flop_parameters(layers, dim, vocab) + 12 * layers * dim * context
