"""``manual-bp check`` families for the recurrent models: ``rnn_cases``, ``lstm_cases``, ``gru_cases``.

Each case draws a random sequence length T (T = 1 among them), batch, sizes, input kind (token ids or floats),
loss (cross-entropy or squared error, sometimes with a mask), a non-zero initial state, sometimes a truncation
``k``, and both dtypes. The torch column compares the gradients of every parameter and of the initial
state(s), truncated or not, with ``torch.nn.RNN/LSTM/GRU`` (``reference/recurrent.py``); the
finite-difference column checks the full-BPTT gradient of a float64 copy, initial state(s) included (a
truncated gradient is not the derivative of any loss, so finite differences cannot check it: torch's
detached graph does).
"""

from __future__ import annotations

import numpy as np

from .gru import GRU
from .lstm import LSTM
from .rnn import RNN

MAX_T, MAX_N, MAX_SIZE = 12, 4, 6


def _relu_safe(model, X, h0, margin=1e-4):
    """No relu pre-activation within ``margin`` of the kink (the finite-difference step must not cross it)."""
    if getattr(model, "nonlinearity", None) != "relu":
        return True
    Xc, is_ids = model._check_X(X)
    cache = model._forward(Xc, is_ids, model._check_h0(h0, Xc.shape[1]))
    return float(np.abs(cache["G"]).min()) > margin


def _draw(cls, rng, i, **kw):
    """One random problem for ``cls``; the i-th case cycles T = 1, dtypes, losses and input kinds."""
    T = 1 if i % 5 == 0 else int(rng.integers(2, MAX_T + 1))
    N = int(rng.integers(1, MAX_N + 1))
    D, H, K = (int(v) for v in rng.integers(1, MAX_SIZE + 1, 3))
    loss = "squared_error" if i % 3 == 2 else "cross_entropy"
    dtype = np.float32 if i % 4 == 3 else np.float64
    ids = bool(i % 2)
    if loss == "cross_entropy":
        K = max(K, 2)  # one class makes every gradient 0: a row that checks nothing
    model = cls(D, H, K, loss=loss, dtype=dtype, seed=int(rng.integers(2**31)), **kw)
    X = rng.integers(0, D, (T, N)) if ids else rng.standard_normal((T, N, D)).astype(dtype)
    if loss == "cross_entropy":
        Y = rng.integers(0, K, (T, N))
    else:
        Y = rng.standard_normal((T, N, K)).astype(dtype)
    parts = tuple((rng.standard_normal((N, H)) * 0.5).astype(dtype) for _ in model.STATES)
    h0 = parts if len(parts) > 1 else parts[0]
    mask = (rng.uniform(size=(T, N)) < 0.75) if rng.uniform() < 0.3 else None
    truncate = int(rng.integers(0, T)) if rng.uniform() < 0.4 else None
    return model, X, Y, h0, mask, truncate


def _recurrent_case(name, model, X, Y, h0, mask, truncate):
    from .check import Case, _cast_model, _with_params  # here, not at the top: check.py imports this module

    model64 = _cast_model(model, model.config(), np.float64)
    states = [f"{p}0" for p in model.STATES]
    parts = h0 if isinstance(h0, tuple) else (h0,)
    point = {**model64.params, **{n: np.asarray(v, dtype=np.float64) for n, v in zip(states, parts)}}
    h0_64 = tuple(point[n] for n in states)
    h0_64 = h0_64 if len(h0_64) > 1 else h0_64[0]

    def fd_loss(p):
        h = tuple(p[n] for n in states)
        params = {k: p[k] for k in model64.params}
        return _with_params(model64, params)(
            lambda: model64.loss(X, Y, h0=h if len(h) > 1 else h[0], mask=mask))

    T, N = np.shape(X)[:2]
    arch = (f"D={model.input_size} H={model.hidden_size} K={model.output_size} T={T} N={N}"
            f"{' ' + model.nonlinearity if isinstance(model, RNN) else ''} {model.loss_name}"
            f" {'ids' if np.ndim(X) == 2 else 'dense'}"
            f"{'' if truncate is None else f' truncate={truncate}'}{' mask' if mask is not None else ''}")
    return Case(
        model=name,
        arch=arch,
        dtype=model.dtype.name,
        grads=lambda: model.loss_and_grad(X, Y, h0=h0, truncate=truncate, mask=mask)[1],
        torch_grads=lambda ref: ref.recurrent_loss_and_grad(model, X, Y, h0=h0, truncate=truncate, mask=mask,
                                                            dtype=np.float64)[1],
        fd_loss=fd_loss,
        fd_params=lambda: point,
        fd_grads=lambda: model64.loss_and_grad(X, Y, h0=h0_64, mask=mask)[1],
    )


def _family(cls, name, rng, n, kwargs_of=lambda i: {}):
    out = []
    for i in range(n):
        for _ in range(20):  # redraw a relu case that sits on the kink
            drawn = _draw(cls, rng, i, **kwargs_of(i))
            if _relu_safe(drawn[0], drawn[1], drawn[3]):
                break
        out.append(_recurrent_case(name, *drawn))
    return out


def rnn_cases(rng, n):
    """Vanilla RNNs, tanh and relu, with full and truncated BPTT."""
    return _family(RNN, "RNN", rng, n, lambda i: {"nonlinearity": "relu" if i % 3 == 1 else "tanh"})


def lstm_cases(rng, n):
    """LSTMs (gates i f g o), non-zero (h0, c0)."""
    return _family(LSTM, "LSTM", rng, n)


def gru_cases(rng, n):
    """GRUs (gates r z n, hidden bias bh), non-zero h0."""
    return _family(GRU, "GRU", rng, n)
