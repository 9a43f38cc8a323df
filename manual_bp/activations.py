"""Activation functions f and their derivatives f'.

Each activation is a pair ``(f, fprime)`` where ``fprime(z, a)`` receives both the pre-activation ``z`` and
the activation ``a = f(z)`` that the forward pass already holds, so that sigmoid and tanh reuse ``a``
instead of recomputing an exponential:

    sigmoid   f(z) = 1 / (1 + e^-z) = (1 + tanh(z/2)) / 2      f'(z) = a (1 - a)
    tanh      f(z) = tanh(z)                                  f'(z) = 1 - a^2
    relu      f(z) = max(z, 0)                                f'(z) = [z > 0]   (0 at the kink, as torch)
    identity  f(z) = z                                        f'(z) = 1
    softplus  f(z) = log(1 + e^z) = max(z, 0) + log1p(e^-|z|) f'(z) = sigmoid(z)

Numerical stability: sigmoid through tanh never forms e^-z, so it cannot overflow for |z| ~ 1e3 (the
textbook ``1/(1+exp(-z))`` warns at z < -709 in float64); softplus through ``log1p(exp(-|z|))`` likewise.
The tanh form is also exact and faster than ``exp`` in NumPy's float64 (its ``exp`` is not vectorised).

Softmax is not listed here: it is only allowed as the output of a cross-entropy loss, where the loss is
computed from the logits (see ``losses.py``).
"""

from __future__ import annotations

import numpy as np


def sigmoid(z, out=None):
    """Logistic function, stable for any finite z: ``0.5 * tanh(0.5 z) + 0.5``."""
    a = np.multiply(z, 0.5, out=out)
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def _sigmoid_prime(z, a):
    return a * (1 - a)


def _tanh(z):
    return np.tanh(z)


def _tanh_prime(z, a):
    return 1 - a * a


def relu(z):
    return np.maximum(z, 0)


def _relu_prime(z, a):
    return (z > 0).astype(z.dtype)


def _identity(z):
    return z


def _identity_prime(z, a):
    return np.ones_like(z)


def softplus(z):
    """``log(1 + e^z)`` computed as ``max(z, 0) + log1p(exp(-|z|))``: never overflows."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def _softplus_prime(z, a):
    return sigmoid(z)


#: name -> (f, fprime(z, a))
ACTIVATIONS = {
    "sigmoid": (sigmoid, _sigmoid_prime),
    "tanh": (_tanh, _tanh_prime),
    "relu": (relu, _relu_prime),
    "identity": (_identity, _identity_prime),
    "softplus": (softplus, _softplus_prime),
}
