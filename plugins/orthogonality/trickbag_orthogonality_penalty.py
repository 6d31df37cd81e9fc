"""The soft orthogonality penalty ||W^T W - I||_F^2 of one weight, and its gradient in closed form.

A weight is read as a matrix of shape (out, rest): a linear layer's (out, in) as it is, a
convolution's (out, in/groups, kh, kw) as (out, in/groups * kh * kw), one row per filter.

Orientation: of the two Gram matrices W W^T (out x out) and W^T W (rest x rest), the smaller one is
used. Both have the same nonzero eigenvalues sigma_i^2, so with n = min(out, rest) and
N = max(out, rest):

    ||big Gram - I_N||^2 = sum_i (sigma_i^2 - 1)^2 + (N - n) = ||small Gram - I_n||^2 + (N - n)

The two penalties differ by a constant: the same gradient, the same training. The small one costs
n^2 entries instead of N^2, and is 0 where the weight is orthogonal (rows orthonormal when
out <= rest, columns when out > rest), where the big one can never go below N - n.
"""
from __future__ import annotations

import torch


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """(out, rest), in float32 at least (float64 stays float64)."""
    return weight.reshape(weight.shape[0], -1).to(torch.promote_types(weight.dtype, torch.float32))


def small_gram(w: torch.Tensor) -> torch.Tensor:
    return w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w


def orthogonality_penalty(weight: torch.Tensor) -> torch.Tensor:
    """||G - I||_F^2 with G the smaller Gram matrix, in float32 whatever autocast is on (a matmul
    in bf16 keeps 8 bits of mantissa: G - I would be mostly rounding)."""
    with torch.autocast(weight.device.type, enabled=False):
        gram = small_gram(as_matrix(weight))
        return (gram - torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)).pow(2).sum()


def orthogonality_gradient(weight: torch.Tensor) -> torch.Tensor:
    """d/dW ||W^T W - I||_F^2 = 4 W (W^T W - I) = 4 (W W^T - I) W, computed through the smaller
    Gram matrix, shaped like ``weight``."""
    with torch.autocast(weight.device.type, enabled=False):
        w = as_matrix(weight)
        gram = small_gram(w)
        gram.diagonal().sub_(1.0)
        grad = gram @ w if w.shape[0] <= w.shape[1] else w @ gram
        return (4 * grad).reshape(weight.shape).to(weight.dtype)
