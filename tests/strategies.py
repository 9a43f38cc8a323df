"""Hypothesis strategies for every model, in one module (labelled draws, bounded finite floats).

MLP section: architectures of 1-5 weight layers with widths 1-16, every activation, every loss with the
output it requires, batch sizes 1-16, float64 and float32, and non-zero random biases.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from manual_bp import MLP

HIDDEN = ["sigmoid", "tanh", "relu", "identity", "softplus"]
# (loss, output activations allowed with it)
LOSS_OUTPUTS = [
    ("squared_error", ["sigmoid", "tanh", "relu", "identity", "softplus"]),
    ("cross_entropy", ["softmax"]),
    ("binary_cross_entropy", ["sigmoid"]),
]


def randomize_params(params: dict, rng: np.random.Generator, scale: float = 0.5) -> dict:
    """Non-zero random values for every parameter, biases included (never the zeros a bug could hide in)."""
    return {k: (rng.standard_normal(v.shape) * scale).astype(v.dtype) for k, v in params.items()}


def relu_safe(net, X, margin=1e-4):
    """True when no relu pre-activation lies within ``margin`` of the kink (finite differences step 1e-6)."""
    uses_relu = net.hidden_activation == "relu" or net.output_activation == "relu"
    if not uses_relu:
        return True
    Z, _ = net._forward(np.asarray(X, dtype=net.dtype))
    return all(np.abs(z).min() > margin for z in Z[1:])


@st.composite
def mlp_cases(draw, dtypes=(np.float64,), max_layers=5, max_width=16, max_batch=16):
    """Draw ``(net, X, Y)``: a random MLP with random non-zero parameters and a matching batch."""
    L = draw(st.integers(1, max_layers), label="weight layers")
    sizes = draw(st.lists(st.integers(1, max_width), min_size=L + 1, max_size=L + 1), label="sizes")
    loss, outputs = draw(st.sampled_from(LOSS_OUTPUTS), label="loss")
    if loss == "cross_entropy" and sizes[-1] < 2:
        sizes[-1] = 2
    out = draw(st.sampled_from(outputs), label="output activation")
    hidden = draw(st.sampled_from(HIDDEN), label="hidden activation")
    dtype = draw(st.sampled_from(dtypes), label="dtype")
    N = draw(st.integers(1, max_batch), label="batch size")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    net = MLP(sizes, hidden, out, loss, dtype=dtype, seed=seed)
    net.params = randomize_params(net.params, rng)
    X = rng.standard_normal((N, sizes[0]))
    K = sizes[-1]
    if loss == "cross_entropy":
        if draw(st.booleans(), label="integer labels"):
            Y = rng.integers(0, K, N)
        else:
            Y = rng.dirichlet(np.ones(K), N)
    elif loss == "binary_cross_entropy":
        Y = rng.uniform(0, 1, (N, K))
    else:
        Y = rng.standard_normal((N, K))
    return net, X, Y
