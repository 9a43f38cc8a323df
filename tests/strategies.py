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


# -----------------------------------------------------------------------------------------------------------
# Recurrent section: RNN, LSTM and GRU cases. T 1..40, N 1..8, D, H, K 1..10; token ids or float inputs; both
# losses, with or without a random mask; truncate None or 0..T; random non-zero parameters (biases included)
# and, for LSTM and GRU always (for the RNN on a draw), non-zero initial states. Arrays are drawn in float64
# and rounded to the model's dtype, so a float64 oracle sees exactly the values the model sees.

from dataclasses import dataclass, field  # noqa: E402

from manual_bp import GRU, LSTM, RNN  # noqa: E402

RECURRENT_MODELS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}


@dataclass
class RecurrentCase:
    """One drawn recurrent problem; ``kwargs()`` are the keyword arguments of ``loss_and_grad``."""

    model: object
    X: np.ndarray
    Y: np.ndarray
    h0: object = None
    mask: np.ndarray = None
    truncate: int = None
    extra: dict = field(default_factory=dict)

    def kwargs(self, truncate=True):
        kw = {"h0": self.h0, "mask": self.mask}
        if truncate:
            kw["truncate"] = self.truncate
        return kw

    def describe(self):
        T, N = self.X.shape[:2]
        h0 = "set" if self.h0 is not None else "None"
        return (f"{self.model!r} T={T} N={N} ids={self.X.ndim == 2} h0={h0} "
                f"mask={self.mask is not None} truncate={self.truncate}: ")


def randomize_recurrent_params(params: dict, rng: np.random.Generator, scale: float = 1.0) -> dict:
    """Non-zero random parameters: matrices ~ N(0, scale^2 / n_in) (so states neither die nor blow up over 40
    steps), biases ~ N(0, 0.5^2): never the zeros a bias bug could hide in."""
    out = {}
    for k, v in params.items():
        if v.ndim == 2:
            out[k] = (rng.standard_normal(v.shape) * (scale / np.sqrt(v.shape[1]))).astype(v.dtype)
        else:
            out[k] = (rng.standard_normal(v.shape) * 0.5).astype(v.dtype)
    return out


def random_state(model, N, rng, scale=0.5):
    """A non-zero initial state in the form ``h0`` accepts (a tuple (h0, c0) for the LSTM)."""
    H = model.hidden_size
    parts = tuple((rng.standard_normal((N, H)) * scale).astype(model.dtype) for _ in model.STATES)
    return parts if len(parts) > 1 else parts[0]


def recurrent_inputs(model, T, N, rng, ids):
    """``X``: token ids (T, N) in [0, D) or floats (T, N, D) in the model's dtype."""
    if ids:
        return rng.integers(0, model.input_size, (T, N))
    return rng.standard_normal((T, N, model.input_size)).astype(model.dtype)


def recurrent_targets(model, T, N, rng):
    if model.loss_name == "cross_entropy":
        return rng.integers(0, model.output_size, (T, N))
    return rng.standard_normal((T, N, model.output_size)).astype(model.dtype)


def relu_safe_recurrent(case, margin=1e-4):
    """True unless a relu RNN has a pre-activation within ``margin`` of the kink (FD steps by 1e-6)."""
    m = case.model
    if getattr(m, "nonlinearity", None) != "relu":
        return True
    X, is_ids = m._check_X(case.X)
    cache = m._forward(X, is_ids, m._check_h0(case.h0, X.shape[1]))
    return float(np.abs(cache["G"]).min()) > margin


@st.composite
def recurrent_cases(draw, models=("RNN", "LSTM", "GRU"), dtypes=(np.float64,), max_T=40, max_N=8, max_size=10,
                    truncate=True, masks=True, losses=("cross_entropy", "squared_error")):
    """Draw a :class:`RecurrentCase`: a model with random non-zero parameters and a matching problem."""
    kind = draw(st.sampled_from(models), label="model")
    T = draw(st.integers(1, max_T), label="T")
    N = draw(st.integers(1, max_N), label="N")
    D = draw(st.integers(1, max_size), label="D")
    H = draw(st.integers(1, max_size), label="H")
    K = draw(st.integers(1, max_size), label="K")
    loss = draw(st.sampled_from(losses), label="loss")
    dtype = draw(st.sampled_from(dtypes), label="dtype")
    ids = draw(st.booleans(), label="token ids")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    kw = {}
    if kind == "RNN":
        kw["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]), label="nonlinearity")
    model = RECURRENT_MODELS[kind](D, H, K, loss=loss, dtype=dtype, seed=seed, **kw)
    rng = np.random.default_rng(seed)
    model.params = randomize_recurrent_params(model.params, rng)
    X = recurrent_inputs(model, T, N, rng, ids)
    Y = recurrent_targets(model, T, N, rng)
    nonzero_h0 = kind != "RNN" or draw(st.booleans(), label="non-zero h0")
    h0 = random_state(model, N, rng) if nonzero_h0 else None
    mask = None
    if masks and draw(st.booleans(), label="mask"):
        mask = rng.uniform(size=(T, N)) < 0.7
    k = None
    if truncate and draw(st.booleans(), label="truncated"):
        k = draw(st.integers(0, T), label="truncate")
    return RecurrentCase(model, X, Y, h0, mask, k)
