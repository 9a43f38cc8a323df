"""torch oracle for ``manual_bp.RNN``, ``LSTM``, ``GRU``: ``nn.RNN/LSTM/GRU``, ``nn.Linear``, F losses.

Our weights are copied into torch's own modules: ``U -> weight_ih_l0``, ``W -> weight_hh_l0``,
``b -> bias_ih_l0``, and ``bias_hh_l0 = 0`` (frozen) for RNN and LSTM, ``bh -> bias_hh_l0`` for the GRU;
``V, c -> nn.Linear(H, K)``. Token ids become one-hot rows here (only here: our code never builds them).
The loss is ``F.cross_entropy`` / ``F.mse_loss`` per step with ``reduction="none"``, masked, summed over time
and averaged over the N sequences, as ours. Every gradient below is autograd's.

- truncated BPTT (``truncate=k``): for each t the graph of E_t starts at the state s_{t-k-1}, ``.detach()``-ed
  when t-k-1 >= 1 (otherwise at the real initial state, whose gradient it then feeds);
- vanishing gradients: the states of a step-by-step run with ``retain_grad()``;
- forward mode: ``torch.func.jvp`` through ``functional_call`` of the same modules;
- chunked training: the state carried from chunk to chunk ``.detach()``-ed, plain SGD on autograd's gradients.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .mlp import _torch_dtype


def _kind(model) -> str:
    """"RNN", "LSTM" or "GRU"; a subclass counts as its base (a planted-bug subclass meets the true one)."""
    from manual_bp.models import RECURRENT_MODELS

    for name, cls in RECURRENT_MODELS.items():
        if isinstance(model, cls):
            return name
    raise TypeError(f"model must be a manual_bp RNN, LSTM or GRU; got {type(model).__name__}")


def _t(a, tdt):
    return torch.as_tensor(np.asarray(a, dtype=np.float64)).to(tdt)


def build_recurrent(model, params=None, dtype=None):
    """``(core, head)``: torch's ``nn.RNN/LSTM/GRU`` and ``nn.Linear`` holding copies of ``params``."""
    kind = _kind(model)
    p = model.params if params is None else params
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    D, H, K = model.input_size, model.hidden_size, model.output_size
    if kind == "RNN":
        core = nn.RNN(D, H, nonlinearity=model.nonlinearity, dtype=tdt)
    elif kind == "LSTM":
        core = nn.LSTM(D, H, dtype=tdt)
    else:
        core = nn.GRU(D, H, dtype=tdt)
    head = nn.Linear(H, K, dtype=tdt)
    with torch.no_grad():
        core.weight_ih_l0.copy_(_t(p["U"], tdt))
        core.weight_hh_l0.copy_(_t(p["W"], tdt))
        core.bias_ih_l0.copy_(_t(p["b"], tdt))
        if kind == "GRU":
            core.bias_hh_l0.copy_(_t(p["bh"], tdt))
        else:
            core.bias_hh_l0.zero_()
        head.weight.copy_(_t(p["V"], tdt))
        head.bias.copy_(_t(p["c"], tdt))
    if kind != "GRU":
        core.bias_hh_l0.requires_grad_(False)  # our models have one bias; torch's second stays 0
    return core, head


def _inputs(model, X, tdt):
    X = np.asarray(X)
    if np.issubdtype(X.dtype, np.integer):
        return F.one_hot(torch.as_tensor(X.astype(np.int64)), model.input_size).to(tdt)  # (T, N, D)
    return _t(X, tdt)


def _targets(model, Y, tdt):
    Y = np.asarray(Y)
    if model.loss_name == "cross_entropy":
        return torch.as_tensor(Y.astype(np.int64))
    return _t(Y, tdt)


def _state0(model, h0, N, tdt):
    """The initial state as leaf tensors ``(N, H)`` with ``requires_grad``: ``[h0]`` or ``[h0, c0]``."""
    H = model.hidden_size
    parts = [h0] if _kind(model) != "LSTM" else list(h0 if h0 is not None else (None, None))
    out = []
    for v in parts:
        v = np.zeros((N, H)) if v is None else v
        out.append(_t(v, tdt).requires_grad_(True))
    return out


def _run(core, kind, x, state):
    """torch's module over ``x (T', N, D)`` from ``state`` (list of (N, H)); ``(out (T', N, H), state)``."""
    if kind == "LSTM":
        out, (h, c) = core(x, (state[0][None], state[1][None]))
        return out, [h[0], c[0]]
    out, h = core(x, state[0][None])
    return out, [h[0]]


def _step_losses(model, head, hs, Yt, mask_t):
    """``E_tn : (T', N)`` from the states ``hs (T', N, H)`` (masked)."""
    q = head(hs)
    T, N, K = q.shape
    if model.loss_name == "cross_entropy":
        E = F.cross_entropy(q.reshape(T * N, K), Yt.reshape(T * N), reduction="none").reshape(T, N)
    else:
        E = 0.5 * F.mse_loss(q, Yt, reduction="none").sum(dim=-1)
    return E if mask_t is None else E * mask_t


def _mask(mask, T, N, tdt):
    return None if mask is None else torch.as_tensor(np.asarray(mask, dtype=bool)).to(tdt)


def _grads(model, core, head, state0):
    kind = _kind(model)
    g = {
        "U": core.weight_ih_l0.grad,
        "W": core.weight_hh_l0.grad,
        "b": core.bias_ih_l0.grad,
    }
    if kind == "GRU":
        g["bh"] = core.bias_hh_l0.grad
    g["V"], g["c"] = head.weight.grad, head.bias.grad
    names = ["h0", "c0"] if kind == "LSTM" else ["h0"]
    for name, s in zip(names, state0):
        g[name] = s.grad
    shapes = {k: np.shape(v) for k, v in model.params.items()}
    shapes.update(h0=state0[0].shape, c0=state0[-1].shape)
    return {k: np.zeros(shapes[k]) if v is None else v.detach().numpy().copy() for k, v in g.items()}


def recurrent_loss_and_grad(model, X, Y, h0=None, truncate=None, mask=None, dtype=None):
    """Autograd's loss and gradients for ``model`` on ``(X, Y)``: ``(float, {name: ndarray})``.

    ``grads`` has the params' keys plus ``"h0"`` (and ``"c0"``). ``truncate=k`` builds, for each t, the graph
    of E_t from s_{t-k-1}, detached when t-k-1 >= 1. ``dtype`` (default: the model's) is the precision torch
    computes in; float64 gives an oracle for a float32 model too.
    """
    kind = _kind(model)
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    core, head = build_recurrent(model, dtype=tdt)
    x, Yt = _inputs(model, X, tdt), _targets(model, Y, tdt)
    T, N = x.shape[:2]
    mask_t = _mask(mask, T, N, tdt)
    state0 = _state0(model, h0, N, tdt)
    if truncate is None or truncate >= T - 1:
        out, _ = _run(core, kind, x, state0)
        loss = _step_losses(model, head, out, Yt, mask_t).sum() / N
    else:
        k = int(truncate)
        with torch.no_grad():  # the values s_1..s_T, to start each E_t's graph from
            states = [state0]
            for t in range(1, T + 1):
                states.append(_run(core, kind, x[t - 1 : t], states[-1])[1])
        loss = 0
        for t in range(1, T + 1):
            start = max(0, t - k - 1)
            s_start = state0 if start == 0 else [s.detach() for s in states[start]]
            out, _ = _run(core, kind, x[start:t], s_start)
            m = None if mask_t is None else mask_t[t - 1 : t]
            loss = loss + _step_losses(model, head, out[-1:], Yt[t - 1 : t], m).sum() / N
    loss.backward()
    return float(loss.item()), _grads(model, core, head, state0)


def recurrent_forward(model, X, h0=None, dtype=None):
    """torch's outputs ``(T, N, K)`` (softmax probabilities or identity) and final state (``h0``'s format)."""
    kind = _kind(model)
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    core, head = build_recurrent(model, dtype=tdt)
    x = _inputs(model, X, tdt)
    with torch.no_grad():
        out, state = _run(core, kind, x, _state0(model, h0, x.shape[1], tdt))
        q = head(out)
        if model.loss_name == "cross_entropy":
            q = torch.softmax(q, dim=-1)
    final = tuple(s.numpy().copy() for s in state)
    return q.numpy().copy(), (final if kind == "LSTM" else final[0])


def recurrent_vanishing(model, X, Y, h0=None, dtype=None) -> dict:
    """``||dE_T/dh_k||`` (and ``||dE_T/dc_k||`` for the LSTM), k = 0..T, from ``retain_grad`` on every state.

    E_T is the batch mean of the last step's loss; the module runs one step at a time so that each state is a
    tensor of the graph.
    """
    kind = _kind(model)
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    core, head = build_recurrent(model, dtype=tdt)
    x, Yt = _inputs(model, X, tdt), _targets(model, Y, tdt)
    T, N = x.shape[:2]
    states = [_state0(model, h0, N, tdt)]
    for t in range(1, T + 1):
        _, s = _run(core, kind, x[t - 1 : t], states[-1])
        for part in s:
            part.retain_grad()
        states.append(s)
    E_T = _step_losses(model, head, states[-1][0][None], Yt[T - 1 : T], None).sum() / N
    E_T.backward()
    names = ["h", "c"] if kind == "LSTM" else ["h"]
    out = {}
    for i, name in enumerate(names):
        out[name] = np.array([0.0 if s[i].grad is None else float(torch.linalg.norm(s[i].grad))
                              for s in states])
    return out


def recurrent_jvp(model, X, Y, tangents, h0=None, mask=None, dtype=None):
    """``torch.func.jvp`` of the loss along ``tangents`` (keyed like params, optionally ``"h0"``/``"c0"``)."""
    from torch.func import functional_call, jvp

    kind = _kind(model)
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    core, head = build_recurrent(model, dtype=tdt)
    x, Yt = _inputs(model, X, tdt), _targets(model, Y, tdt)
    T, N = x.shape[:2]
    H = model.hidden_size
    mask_t = _mask(mask, T, N, tdt)
    state0 = [s.detach() for s in _state0(model, h0, N, tdt)]
    core_names = {"weight_ih_l0": "U", "weight_hh_l0": "W", "bias_ih_l0": "b", "bias_hh_l0": "bh"}
    primals = {f"core.{n}": p.detach() for n, p in core.named_parameters()}
    primals["core.bias_hh_l0"] = core.bias_hh_l0.detach()
    primals["head.weight"], primals["head.bias"] = head.weight.detach(), head.bias.detach()
    tans = {}
    for n in core_names:
        ours = core_names[n]
        if ours in tangents:
            tans[f"core.{n}"] = _t(tangents[ours], tdt)
        else:  # bias_hh of RNN/LSTM: held at 0
            tans[f"core.{n}"] = torch.zeros_like(primals[f"core.{n}"])
    tans["head.weight"], tans["head.bias"] = _t(tangents["V"], tdt), _t(tangents["c"], tdt)
    state_names = ["h0", "c0"] if kind == "LSTM" else ["h0"]
    s_tans = [_t(tangents[n], tdt) if n in tangents else torch.zeros(N, H, dtype=tdt) for n in state_names]

    def f(p, s0):
        cp = {n[5:]: v for n, v in p.items() if n.startswith("core.")}
        if kind == "LSTM":
            out, _ = functional_call(core, cp, (x, (s0[0][None], s0[1][None])))
        else:
            out, _ = functional_call(core, cp, (x, s0[0][None]))
        q = functional_call(head, {"weight": p["head.weight"], "bias": p["head.bias"]}, (out,))
        K = q.shape[-1]
        if model.loss_name == "cross_entropy":
            E = F.cross_entropy(q.reshape(T * N, K), Yt.reshape(T * N), reduction="none").reshape(T, N)
        else:
            E = 0.5 * F.mse_loss(q, Yt, reduction="none").sum(dim=-1)
        if mask_t is not None:
            E = E * mask_t
        return E.sum() / N

    value, dvalue = jvp(f, (primals, tuple(state0)), (tans, tuple(s_tans)))
    return float(value.item()), float(dvalue.item())


def recurrent_train_chunks(model, X, Y, chunk, lr, h0=None, truncate=None, mask=None, dtype=None):
    """Train on one long sequence in chunks of ``chunk`` steps, carrying the final state ``.detach()``-ed.

    Each chunk: autograd's gradient of that chunk's loss (optionally truncated within it), then plain SGD
    ``p -= lr * grad`` on every parameter (torch's ``bias_hh_l0`` stays 0 for RNN/LSTM). Returns
    ``(losses, params, final_state)`` in our layout; the model itself is not changed.
    """
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    params = {k: np.asarray(v, dtype=np.float64).copy() for k, v in model.params.items()}
    X, Y = np.asarray(X), np.asarray(Y)
    T = X.shape[0]
    state = h0
    losses = []
    for a in range(0, T, chunk):
        b = min(T, a + chunk)
        copy = type(model)(**{**model.config(), "dtype": np.float64})
        copy.params = params
        m = None if mask is None else np.asarray(mask)[a:b]
        E, g = recurrent_loss_and_grad(copy, X[a:b], Y[a:b], h0=state, truncate=truncate, mask=m, dtype=tdt)
        losses.append(E)
        _, state = recurrent_forward(copy, X[a:b], h0=state, dtype=tdt)  # the carried state, detached
        params = {k: params[k] - lr * g[k] for k in params}
    return losses, params, state
