"""Activation functions f and their derivatives f'.

Each activation is a pair ``(f, fprime)`` where ``fprime(z, a)`` receives both the pre-activation ``z`` and
the activation ``a = f(z)`` that the forward pass already holds, so that sigmoid and tanh reuse ``a``
instead of recomputing an exponential:

    sigmoid   f(z) = 1 / (1 + e^-z)                           f'(z) = a (1 - a)
    tanh      f(z) = tanh(z)                                  f'(z) = 1 - a^2
    relu      f(z) = max(z, 0)                                f'(z) = [z > 0]   (0 at the kink, as torch)
    identity  f(z) = z                                        f'(z) = 1
    softplus  f(z) = log(1 + e^z) = max(z, 0) + log1p(e^-|z|) f'(z) = sigmoid(z)

``f`` and ``fprime`` take an optional ``out=`` array (which may be ``z`` itself) so that a hot loop can
reuse its buffers; without it they return a new array.

Numerical stability: sigmoid as ``1 / (1 + e^-z)`` never returns a wrong value: for z < -709 (float64;
-88 in float32) e^-z overflows to inf and 1 / (1 + inf) = 0 is the correct limit, so that overflow is
expected and silenced; every step is correctly rounded, so the result has a small *relative* error even deep
in the left tail, as torch's (the form ``(1 + tanh(z/2)) / 2`` rounds every value below about 1e-17 to 0).
It is also the fast form here: NumPy 2.x's float64 ``exp`` is vectorised and about twice as fast as its
``tanh`` (measured on the benchmark machine, see benchmarks/RESULTS.md). Softplus goes through
``log1p(exp(-|z|))``, which cannot overflow.

Softmax is not listed here: it is only allowed as the output of a cross-entropy loss, where the loss is
computed from the logits (see ``losses.py``).
"""

from __future__ import annotations

import numpy as np


def sigmoid(z, out=None):
    """Logistic function ``1 / (1 + e^-z)``, correct for any finite z (e^-z = inf gives exactly 0)."""
    with np.errstate(over="ignore"):  # e^-z = inf for z < -709 is the right limit, not an error
        # -z as a product, not np.negative: NumPy 2.4.6's float32 np.negative with a strided out= (a gate
        # column of the stacked LSTM/GRU buffer) reads the wrong input element (tests/test_activations_out.py)
        a = np.multiply(z, -1, out=out)
        np.exp(a, out=a)
    a += 1
    np.divide(1.0, a, out=a)
    return a


def _sigmoid_prime(z, a, out=None):
    d = np.subtract(1, a, out=out)
    d *= a  # a (1 - a)
    return d


def _tanh(z, out=None):
    return np.tanh(z, out=out)


def _tanh_prime(z, a, out=None):
    d = np.multiply(a, a, out=out)
    np.subtract(1, d, out=d)  # 1 - a^2
    return d


def relu(z, out=None):
    return np.maximum(z, 0, out=out)


def _relu_prime(z, a, out=None):
    if out is None:
        return (z > 0).astype(z.dtype)
    return np.greater(z, 0, out=out)  # bool -> float into out (which may be z itself)


def _identity(z, out=None):
    if out is None or out is z:
        return z
    np.copyto(out, z)
    return out


def _identity_prime(z, a, out=None):
    if out is None:
        return np.ones_like(z)
    out.fill(1)
    return out


def softplus(z, out=None):
    """``log(1 + e^z)`` computed as ``max(z, 0) + log1p(exp(-|z|))``: never overflows."""
    t = np.log1p(np.exp(-np.abs(z)))
    return np.add(np.maximum(z, 0), t, out=out)


def _softplus_prime(z, a, out=None):
    return sigmoid(z, out=out)


#: name -> (f, fprime(z, a))
ACTIVATIONS = {
    "sigmoid": (sigmoid, _sigmoid_prime),
    "tanh": (_tanh, _tanh_prime),
    "relu": (relu, _relu_prime),
    "identity": (_identity, _identity_prime),
    "softplus": (softplus, _softplus_prime),
}
