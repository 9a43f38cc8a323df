"""Losses at the output layer, and their delta^(L) = dE/dz^(L) (BP1).

The batch loss is the mean over the N samples of each sample's loss, as the seed averages a mini-batch:

    squared_error         E_n = 1/2 ||y_n - a_n||^2                      a = f(z), any f but softmax
                          delta^(L) = -(y - a) ⊙ f'(z) / N               (BP1)
    cross_entropy         E_n = -sum_k y_nk log softmax(z_n)_k           a = softmax(z)
                              = logsumexp(z_n) - sum_k y_nk z_nk          (y one-hot or a probability row)
                          delta^(L) = (a - y) / N                        (BP1, softmax and loss together)
    binary_cross_entropy  E_n = sum_k [softplus(z_nk) - y_nk z_nk]       a = sigmoid(z)
                          delta^(L) = (a - y) / N                        (BP1, sigmoid and loss together)

The last two are computed from the logits z, never from log(a), so that a saturated output gives a large
finite loss instead of log(0). Integer class labels stand for one-hot rows and are never expanded.
"""

from __future__ import annotations

import numpy as np

from .activations import sigmoid, softplus


def log_softmax(z):
    """``z - logsumexp(z)`` along the last axis, stable for any finite z."""
    m = z.max(axis=-1, keepdims=True)
    shifted = z - m
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(z):
    """Stable softmax along the last axis."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def squared_error(z, a, Y):
    """Mean over the batch of 1/2 ||y - a||^2."""
    r = Y - a
    return 0.5 * float(np.einsum("nk,nk->", r, r)) / len(a)


def cross_entropy(z, a, Y):
    """Mean over the batch of -sum_k y_k log softmax(z)_k; Y is labels (N,) or rows (N, K)."""
    logp = log_softmax(z)
    N = len(z)
    if Y.ndim == 1:
        return -float(logp[np.arange(N), Y].sum()) / N
    return -float(np.einsum("nk,nk->", Y, logp)) / N


def binary_cross_entropy(z, a, Y):
    """Mean over the batch of sum_k [softplus(z_k) - y_k z_k], the BCE of sigmoid(z) from its logits."""
    return float((softplus(z) - Y * z).sum()) / len(z)


def output_delta(loss, z, a, Y, fprime):
    """delta^(L) = dE/dz^(L) for the batch-mean loss E (BP1). The 1/N of the mean enters here, once.

    Squared error and binary cross-entropy; cross-entropy's delta comes with its loss from ``loss_and_delta``.
    """
    N = len(z)
    if loss == "squared_error":
        d = a - Y
        d *= fprime(z, a)  # (BP1) -(y - a) ⊙ f'(z)
    elif loss == "binary_cross_entropy":
        d = a - Y  # (BP1) sigmoid(z) - y
    else:
        raise ValueError(f"unknown loss {loss!r}")
    d /= N
    return d


def loss_and_delta(loss, z, Y, f, fprime):
    """``(E, delta^(L))`` from the logits z^(L), for ``loss_and_grad``: the two share their work.

    For cross-entropy, with ``u = z - max z`` (so that every exponent is <= 0) and ``s = sum_k e^u_k``:
    ``-log softmax(z)_k = log s - u_k`` gives E, and ``softmax(z) = e^u / s`` becomes delta in place,
    ``(a - y) / N`` computed as ``e^u / (N s) - y / N`` (BP1): one exponential pass for both, and the
    forward pass need not form softmax(z) separately. The other losses apply ``f`` and call ``output_delta``.
    """
    if loss != "cross_entropy":
        a = f(z)
        return LOSSES[loss](z, a, Y), output_delta(loss, z, a, Y, fprime)
    N = len(z)
    u = z - z.max(axis=-1, keepdims=True)  # (N, K)
    if Y.ndim == 1:
        rows = np.arange(N)
        u_y = u[rows, Y]  # (N,) the shifted logit of each label
    else:
        Yu = np.einsum("nk,nk->n", Y, u)  # (N,) sum_k y_k u_k
    d = np.exp(u, out=u)
    s = d.sum(axis=-1, keepdims=True)  # (N, 1)
    log_s = np.log(s[:, 0])
    if Y.ndim == 1:
        E = float((log_s - u_y).sum()) / N  # -log softmax(z)_y
    else:
        E = float((log_s * Y.sum(axis=1) - Yu).sum()) / N  # -sum_k y_k log softmax(z)_k
    s *= N
    d /= s  # a / N, a = softmax(z)
    if Y.ndim == 1:
        d[rows, Y] -= 1 / N  # (BP1) (a - y) / N, y one-hot by label
    else:
        d -= Y / N  # (BP1) (a - y) / N
    return E, d


LOSSES = {
    "squared_error": squared_error,
    "cross_entropy": cross_entropy,
    "binary_cross_entropy": binary_cross_entropy,
}

__all__ = ["LOSSES", "output_delta", "loss_and_delta", "log_softmax", "softmax", "sigmoid"]
