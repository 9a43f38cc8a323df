"""torch oracle for ``model.trace``: every traced intermediate, read off torch's own modules.

MLP. ``nn.Linear`` layers and torch's activation modules, run layer by layer; ``retain_grad`` on each
``z^(l)`` (a Linear's output) and ``a^(l)`` (an activation module's output) gives ``delta^(l) = z.grad`` and
``dE/da^(l) = a.grad``; the Linear layers' ``.grad`` give dE/dW, dE/db.

Recurrent nets (any number of layers, either direction, packed, dropout). torch's ``nn.RNN/LSTM/GRU`` modules
(one per layer and direction) run one step at a time, so that every state is a tensor of the graph with
``retain_grad``; a reverse direction reads each sequence backwards within its length, as torch's
bidirectional module does, and its entries are in that processing order (as the trace's):

- dE/dh_t, dE/dc_t: the state tensors' ``.grad``. torch's step returns h_t and c_t as two outputs, so
  ``c_t.grad`` is dE/dc_t through c_{t+1} alone (h_t held fixed), as the trace defines it.
- The gate deltas, without re-deriving anything: each layer's module reads an augmented input
  ``[x_t ; e_t]`` with ``weight_ih = [U | I]`` and ``e_t = 0``. The forward pass is unchanged, and
  ``e_t.grad = dE/d(U x_t + b)``, the deltas of the input projection (S1) that the trace's gate deltas are.
- The gate activations are forward values only: torch's documented cell equations on the module's weights
  (``F.linear``, ``torch.sigmoid``, ``torch.tanh``), pinned to the module: ``pinning_error`` is the largest
  relative difference between the states they rebuild and the module's own states (the tests require
  < 1e-13; `manual-bp check` refuses > 1e-12; seen: <= 4e-16).
- Truncation (``truncate=k``): each E_t runs its own window from every layer's detached state at t-k-1 (the
  initial state, not detached, when t-k-1 = 0), as the oracle's ``recurrent_loss_and_grad``; a state's or an
  e_t's gradient is the sum over the windows that hold it.

Names are the trace's (``manual_bp.trace``); arrays are float64, in the model's layout.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .mlp import _ACT, _MODULE, _as_torch_inputs, build_mlp
from .recurrent import (
    _TN,
    _drops,
    _inputs,
    _kind,
    _live,
    _loss_mask,
    _losses_from_logits,
    _state0,
    _targets,
    _tm,
    build_layers,
    build_recurrent,
)


def mlp_trace(net, X, Y, input_grad=False) -> dict:
    """The MLP's trace entries from torch (float64): module docstring."""
    tdt = torch.float64
    layers = build_mlp(net, dtype=tdt)
    Xt, Yt = _as_torch_inputs(net, X, Y, tdt)
    Xt.requires_grad_(input_grad)
    if input_grad:
        Xt.retain_grad()
    L, N = net.L, Xt.shape[0]
    zs, acts = {}, {}
    a = Xt
    for l, lin in enumerate(layers, start=1):
        z = lin(a)
        z.retain_grad()
        zs[l] = z
        if l < L:
            a = _MODULE[net.hidden_activation]()(z)
            a.retain_grad()
            acts[l] = a
    if net.loss_name == "cross_entropy":
        loss = F.cross_entropy(z, Yt, reduction="mean")
        acts[L] = torch.softmax(z, dim=1)
    elif net.loss_name == "binary_cross_entropy":
        loss = F.binary_cross_entropy_with_logits(z, Yt, reduction="sum") / N
        acts[L] = torch.sigmoid(z)
    else:
        acts[L] = _ACT[net.output_activation](z)
        loss = 0.5 * F.mse_loss(acts[L], Yt, reduction="sum") / N
    loss.backward()
    out = {"a^(0)": Xt.detach().numpy().copy(), "E": np.array(loss.item())}
    for l in range(1, L + 1):
        out[f"z^({l})"] = zs[l].detach().numpy().copy()
        out[f"a^({l})"] = acts[l].detach().numpy().copy()
        out[f"delta^({l})"] = zs[l].grad.numpy().copy()
        out[f"dE/dW^({l})"] = layers[l - 1].weight.grad.numpy().copy()
        out[f"dE/db^({l})"] = layers[l - 1].bias.grad.numpy().copy()
        if l < L:
            out[f"dE/da^({l})"] = acts[l].grad.numpy().copy()
    if input_grad:
        out["dE/da^(0)"] = Xt.grad.numpy().copy()
    return out


def _augmented(module, kind, GH, d):
    """Direction ``d`` of the one-layer ``module`` as a one-direction module whose input is ``[x ; e]``, with
    ``weight_ih = [U | I]`` (and every other weight of that direction)."""
    d_in = module.input_size
    kw = dict(bias=module.bias, batch_first=False, dtype=torch.float64)
    if kind == "RNN":
        new = nn.RNN(d_in + GH, module.hidden_size, nonlinearity=module.nonlinearity, **kw)
    elif kind == "LSTM":
        new = nn.LSTM(d_in + GH, module.hidden_size, proj_size=module.proj_size, **kw)
    else:
        new = nn.GRU(d_in + GH, module.hidden_size, **kw)
    tail = "_reverse" if d else ""
    sd = {k[: -len(tail)] if tail else k: v.detach().clone() for k, v in module.state_dict().items()
          if k.endswith("_l0" + tail)}
    sd["weight_ih_l0"] = torch.cat([sd["weight_ih_l0"], torch.eye(GH, dtype=torch.float64)], dim=1)
    new.load_state_dict(sd, strict=True)
    return new.train(False)


def _gates(kind, module, x, parts):
    """torch's documented cell equations on the module's weights (values only): the trace's gate entries
    and the next state they rebuild (for the pinning)."""
    H = module.hidden_size
    d_in = x.shape[-1]
    w_ih, w_hh = module.weight_ih_l0[:, :d_in], module.weight_hh_l0  # [U | I]: U alone
    b_ih = module.bias_ih_l0 if module.bias else 0
    b_hh = module.bias_hh_l0 if module.bias else 0
    gi = F.linear(x, w_ih) + b_ih
    gh = F.linear(parts[0], w_hh) + b_hh
    if kind == "RNN":
        z = gi + gh
        h = torch.tanh(z) if module.nonlinearity == "tanh" else torch.relu(z)
        return {"z_t": z}, [h]
    if kind == "LSTM":
        a = gi + gh
        i, f = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H : 2 * H])
        g, o = torch.tanh(a[:, 2 * H : 3 * H]), torch.sigmoid(a[:, 3 * H :])
        c = f * parts[1] + i * g
        m = o * torch.tanh(c)
        gates = {"i_t": i, "f_t": f, "g_t": g, "o_t": o}
        if module.proj_size:
            gates["m_t"] = m
            return gates, [F.linear(m, module.weight_hr_l0), c]
        return gates, [m, c]
    r = torch.sigmoid(gi[:, :H] + gh[:, :H])
    z = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
    n = torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
    h = (1 - z) * n + z * parts[0]
    return {"r_t": r, "z_t": z, "n_t": n, "gh_n": gh[:, 2 * H :]}, [h]


_DELTAS = {"RNN": ("delta_t",), "LSTM": ("da_i", "da_f", "da_g", "da_o"), "GRU": ("da_r", "da_z", "da_n")}


def recurrent_trace(model, X, Y, h0=None, truncate=None, mask=None, lengths=None, dropout_masks=None) -> dict:
    """The recurrent trace's entries from torch (float64): module docstring.

    Also returns ``"pinning_error"``: the largest relative difference between the states rebuilt from the
    gate entries and torch's module's own states.
    """
    kind = _kind(model)
    tdt = torch.float64
    x = _tm(model, _inputs(model, X, tdt))
    Yt = _tm(model, _targets(model, Y, tdt))
    T, N = _TN(model, X)
    loss_mask = _loss_mask(model, mask, lengths, T, N, tdt)
    m_tm = None if loss_mask is None else _tm(model, loss_mask)
    live = _live(model, lengths, T, N, tdt)
    live = None if live is None else _tm(model, live)
    drops = _drops(model, dropout_masks, tdt)
    d_tm = None if drops is None else [_tm(model, d) for d in drops]
    _, head = build_recurrent(model, dtype=tdt, split_bias=True)
    mods = build_layers(model, dtype=tdt, split_bias=True, batch_first=False)
    GH = model.GATES * model.hidden_size
    L, Dd, S = model.num_layers, model.num_directions, len(model.STATES)
    cells = [(l, d) for l in range(L) for d in range(Dd)]
    aug = {(l, d): _augmented(mods[l], kind, GH, d) for l, d in cells}
    state0 = _state0(model, h0, N, tdt)
    start_states = {(l, d): [s[l * Dd + d] for s in state0] for l, d in cells}
    sizes = [model._part_size(p) for p in model.STATES]
    dS = {c: [np.zeros((T + 1, N, n)) for n in sizes] for c in cells}
    dG = {c: np.zeros((T, N, GH)) for c in cells}
    k = T - 1 if truncate is None else min(int(truncate), T - 1)
    arange = torch.arange(N)
    # (PK3) the reverse direction reads each sequence backwards within its own length: processing step s
    # reads time rev[s] (an involution: the same map takes its outputs back to real time)
    lengths_np = np.full(N, T) if lengths is None else np.asarray(lengths)
    t_idx = np.arange(T)[:, None]
    rev = torch.as_tensor(np.where(t_idx < lengths_np[None, :], lengths_np[None, :] - 1 - t_idx, t_idx))
    worst = [0.0]

    def run(start, stop, states, record):
        """Steps start..stop-1 (layer by layer, each direction in its own processing order) from ``states``
        ({cell: [part]}); returns the top layer's outputs (W, N, F) in real time and, per cell, each step's
        (retained) new states, its e tensor and (with ``record``) its gate entries."""
        inp = x[start:stop]
        W = stop - start
        new_states = {c: [] for c in cells}
        es = {c: [] for c in cells}
        gates = {c: [] for c in cells}
        for l in range(L):
            ys = []
            for d in range(Dd):
                c = (l, d)
                seq = inp if d == 0 else inp[rev[start:stop], arange]  # (BD1) bidirectional: start = 0
                st = states[c]
                hs = []
                for s in range(W):
                    e = torch.zeros(N, GH, dtype=tdt, requires_grad=True)
                    hx = (st[0][None], st[1][None]) if kind == "LSTM" else st[0][None]
                    _, fin = aug[c](torch.cat([seq[s], e], dim=1)[None], hx)
                    fin = [f[0] for f in fin] if kind == "LSTM" else [fin[0]]
                    if record:
                        with torch.no_grad():
                            g, rebuilt = _gates(kind, aug[c], seq[s], st)
                        for a, b in zip(rebuilt, fin):
                            err = (a - b).abs().max() / (b.abs().max() + 1e-300)
                            worst[0] = max(worst[0], float(err.detach()))
                        gates[c].append(g)
                    keep = None if live is None else live[start + s][:, None] > 0
                    if keep is not None:
                        fin = [torch.where(keep, f, p) for f, p in zip(fin, st)]  # (PK1) the state stays
                    for f in fin:
                        f.retain_grad()
                    # the output is read from the state tensor itself, so that the retained state carries
                    # both of its paths (up, or to the head, and on in time)
                    hs.append(fin[0] if keep is None else fin[0] * keep)
                    new_states[c].append(fin)
                    es[c].append(e)
                    st = fin
                y = torch.stack(hs)
                ys.append(y if d == 0 else y[rev[start:stop], arange])  # back to real time
            y = ys[0] if Dd == 1 else torch.cat(ys, dim=-1)
            if l < L - 1:
                inp = y if d_tm is None else y * d_tm[l][start:stop]
        return y, new_states, es, gates

    for parts in start_states.values():
        for p in parts:
            p.retain_grad()
    ys, states, es, gates = run(0, T, start_states, record=True)
    q = head(ys)
    q.retain_grad()
    Eq = _losses_from_logits(model, q, Yt, m_tm)
    loss = Eq.sum() / N
    result = {"x_t": x.numpy().copy(), "q_t": q.detach().numpy().copy(), "E_t": Eq.detach().numpy().copy()}
    yhat = torch.softmax(q, -1) if model.loss_name == "cross_entropy" else q
    result["yhat_t"] = yhat.detach().numpy().copy()
    if k >= T - 1:
        loss.backward()
        windows = [(0, states, es)]
    else:  # each E_t through its own window (one direction; truncation refuses two)
        loss.backward(inputs=[q])  # dE/dq_t: q_t feeds E_t alone
        windows = []
        for t in range(1, T + 1):
            start = max(0, t - k - 1)
            s_start = start_states if start == 0 else {
                c: [p.detach() for p in states[c][start - 1]] for c in cells}
            w_y, w_states, w_es, _ = run(start, t, s_start, record=False)
            m = None if m_tm is None else m_tm[t - 1 : t]
            _losses_from_logits(model, head(w_y[-1:]), Yt[t - 1 : t], m).sum().div(N).backward()
            windows.append((start, w_states, w_es))
    for start, w_states, w_es in windows:
        for c in cells:
            for j, (fin, e) in enumerate(zip(w_states[c], w_es[c])):
                for i in range(S):
                    if fin[i].grad is not None:
                        dS[c][i][start + j + 1] += fin[i].grad.numpy()
                if e.grad is not None:
                    dG[c][start + j] += e.grad.numpy()
    for c in cells:
        for i in range(S):
            g = start_states[c][i].grad
            if g is not None:
                dS[c][i][0] = g.numpy()
    result["E"] = np.array(loss.item())
    result["dE/dq_t"] = q.grad.numpy().copy()
    pub = (lambda a: np.swapaxes(a, 0, 1)) if model.batch_first else (lambda a: a)
    H = model.hidden_size
    for c in cells:
        sfx = model._suffix(*c)
        for i, part in enumerate(model.STATES):
            name = model.STATE_NAMES[part]
            vals = [start_states[c][i].detach()] + [fin[i].detach() for fin in states[c]]
            result[f"{name}_t{sfx}"] = pub(torch.stack(vals).numpy().copy())
            result[f"dE/d{name}_t{sfx}"] = pub(dS[c][i])
        for name in gates[c][0]:
            result[name + sfx] = pub(torch.stack([g[name] for g in gates[c]]).numpy().copy())
        for b, name in enumerate(_DELTAS[kind]):
            result[name + sfx] = pub(dG[c][..., b * H : (b + 1) * H])
    ids = np.issubdtype(np.asarray(X).dtype, np.integer)
    result["x_t"] = np.asarray(X) if ids else pub(result["x_t"])
    for key in ("q_t", "yhat_t", "E_t", "dE/dq_t"):
        result[key] = pub(result[key])
    result["pinning_error"] = worst[0]
    return result


def trace(model, X, Y, **kwargs) -> dict:
    """torch's values of ``model.trace(X, Y, **kwargs)``'s entries (dispatch by the model's batch axis); for
    the recurrent nets with every ``dE/d<param>`` from the oracle's ``loss_and_grad`` too."""
    if model.BATCH_AXIS == 0:
        return mlp_trace(model, X, Y, **kwargs)
    from .recurrent import recurrent_loss_and_grad

    out = recurrent_trace(model, X, Y, **kwargs)
    _, grads = recurrent_loss_and_grad(model, X, Y, dtype=torch.float64, **kwargs)
    out.update({f"dE/d{k}": v for k, v in grads.items() if k in model.params})
    return out
