"""torch oracle for ``manual_bp.RNN``, ``LSTM``, ``GRU``: ``nn.RNN/LSTM/GRU``, ``nn.Linear``, F losses.

Our weights are loaded into torch's own modules through ``load_state_dict``, under the names of
``model.param_names()`` (``U -> weight_ih_l0``, ``W_l1_reverse -> weight_hh_l1_reverse``,
``Wr -> weight_hr_l0``, ...; ``V, c -> nn.Linear(D_dir*H_out, K)``), with every option of the model
(num_layers, bidirectional, batch_first, bias, proj_size; nonlinearity). The RNN's and LSTM's one bias
``b`` is split at random into both of torch's, ``bias_ih = b - r`` and ``bias_hh = r`` (r non-zero, both
trainable), so that the oracle holds non-zero values in both biases as a torch user's model does; their
gradients are equal and are our ``db``.
Token ids become one-hot rows here (only here: our code never builds them). The loss is ``F.cross_entropy`` /
``F.mse_loss`` per step with ``reduction="none"``, masked, summed over time and averaged over the N sequences,
as ours. Every gradient below is autograd's.

- lengths: ``pack_padded_sequence(..., enforce_sorted=False)`` into the module, ``pad_packed_sequence(...,
  total_length=T)`` out; the loss keeps steps t <= L_n;
- dropout between layers with given masks: the stack built from one torch module per layer (one layer, both
  directions each), the masks times 1/(1-p) applied between them (torch's own module cannot take masks); the
  placement itself is checked against torch's module in training mode at p = 1 (tests);
- truncated BPTT (``truncate=k``): for each t the graph of E_t starts at every layer's state s_{t-k-1},
  ``.detach()``-ed when t-k-1 >= 1 (otherwise at the real initial state, whose gradient it then feeds); the
  stack runs one step at a time, a finished sequence's state held with ``torch.where``;
- vanishing gradients: the states of a step-by-step run with ``retain_grad()``;
- forward mode: ``torch.func.jvp`` through ``functional_call`` of the same modules, or torch's forward-mode AD
  (``torch.autograd.forward_ad``, which ``torch.func.jvp`` wraps) where the input is a packed sequence, which
  ``torch.func`` cannot take;
- the module's VJP: ``torch.autograd.grad(outputs, inputs, grad_outputs)``;
- chunked training: the state carried from chunk to chunk ``.detach()``-ed, plain SGD on autograd's gradients.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .mlp import _torch_dtype

SPLIT_SEED = 12345


def _kind(model) -> str:
    """"RNN", "LSTM" or "GRU"; a subclass counts as its base (a planted-bug subclass meets the true one)."""
    from manual_bp.models import RECURRENT_MODELS

    for name, cls in RECURRENT_MODELS.items():
        if isinstance(model, cls):
            return name
    raise TypeError(f"model must be a manual_bp RNN, LSTM or GRU; got {type(model).__name__}")


def _t(a, tdt):
    return torch.as_tensor(np.asarray(a, dtype=np.float64)).to(tdt)


def _new_module(model, kind, d_in, num_layers, batch_first, tdt):
    kw = dict(num_layers=num_layers, bias=model.bias, batch_first=batch_first,
              bidirectional=model.bidirectional, dtype=tdt)
    if num_layers > 1:
        kw["dropout"] = model.dropout
    if kind == "RNN":
        return nn.RNN(d_in, model.hidden_size, nonlinearity=model.nonlinearity, **kw)
    if kind == "LSTM":
        return nn.LSTM(d_in, model.hidden_size, proj_size=model.proj_size, **kw)
    return nn.GRU(d_in, model.hidden_size, **kw)


def _load(module, kind, p, names, tdt, split_bias):
    """Load ``names`` {ours: torch's} from ``p`` into ``module`` (the bias split: module docstring)."""
    sd = {}
    rng = np.random.default_rng(SPLIT_SEED)
    for ours, theirs in names.items():
        value = np.asarray(p[ours], dtype=np.float64)
        if kind != "GRU" and theirs.startswith("bias_ih"):
            r = rng.uniform(0.1, 0.6, value.shape) * rng.choice([-1.0, 1.0], value.shape)
            r = r if split_bias else 0 * value
            sd[theirs] = _t(value - r, tdt)
            sd[theirs.replace("bias_ih", "bias_hh")] = _t(r, tdt)
        else:
            sd[theirs] = _t(value, tdt)
    module.load_state_dict(sd, strict=True)
    if not split_bias and kind != "GRU":
        for name, param in module.named_parameters():
            if name.startswith("bias_hh"):
                param.requires_grad_(False)  # held at 0: our one bias is bias_ih
    module.train(False)  # torch's own dropout never runs in the oracle (masks are applied between layers)
    return module


def build_recurrent(model, params=None, dtype=None, split_bias=False, batch_first=None):
    """``(core, head)``: torch's ``nn.RNN/LSTM/GRU`` with all of the model's options and ``nn.Linear`` (None
    for a bare module), holding copies of ``params``. ``split_bias``: the RNN/LSTM bias split at random into
    both of torch's (else ``bias_hh = 0``, frozen). ``batch_first``: override the model's (the step runner's
    time-major modules)."""
    kind = _kind(model)
    p = model.params if params is None else params
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    bf = model.batch_first if batch_first is None else batch_first
    core = _new_module(model, kind, model.input_size, model.num_layers, bf, tdt)
    names = {k: v for k, v in model.param_names().items() if not v.startswith("head.")}
    _load(core, kind, p, names, tdt, split_bias)
    head = None
    if model.output_size is not None:
        head = nn.Linear(model.output_features, model.output_size, dtype=tdt)
        with torch.no_grad():
            head.weight.copy_(_t(p["V"], tdt))
            head.bias.copy_(_t(p["c"], tdt))
    return core, head


def build_layers(model, params=None, dtype=None, split_bias=False, batch_first=None):
    """One torch module per layer (each one layer, the model's directions): ``[module_0, ..., module_{L-1}]``,
    layer l's parameters under torch's ``_l0`` names."""
    kind = _kind(model)
    p = model.params if params is None else params
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    bf = model.batch_first if batch_first is None else batch_first
    layers = []
    for l in range(model.num_layers):
        d_in = model.input_size if l == 0 else model.output_features
        module = _new_module(model, kind, d_in, 1, bf, tdt)
        names = {}
        for ours, theirs in model.param_names().items():
            if theirs.startswith("head."):
                continue
            base, rest = theirs.split("_l", 1)
            layer = int(rest.split("_")[0])
            if layer == l:
                names[ours] = f"{base}_l0" + ("_reverse" if rest.endswith("_reverse") else "")
        layers.append(_load(module, kind, p, names, tdt, split_bias))
    return layers


def _layer_names(model, l):
    """{torch name in module l of ``build_layers``: ours}."""
    out = {}
    for ours, theirs in model.param_names().items():
        if theirs.startswith("head."):
            continue
        base, rest = theirs.split("_l", 1)
        if int(rest.split("_")[0]) == l:
            out[f"{base}_l0" + ("_reverse" if rest.endswith("_reverse") else "")] = ours
    return out


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


def _TN(model, X):
    """(T, N) of X in the model's layout."""
    shape = np.shape(X)
    return (shape[1], shape[0]) if model.batch_first else (shape[0], shape[1])


def _state0(model, h0, N, tdt, grad=True):
    """The initial state as leaf tensors, torch's layout (D*num_layers, N, size): ``[h0]`` or ``[h0, c0]``."""
    parts = model.state_parts(model.to_torch_state(h0, N), N) if h0 is not None else None
    out = []
    for i, part in enumerate(model.STATES):
        shape = (model.num_layers * model.num_directions, N, model._part_size(part))
        v = np.zeros(shape) if parts is None else np.asarray(parts[i], dtype=np.float64).reshape(shape)
        out.append(_t(v, tdt).requires_grad_(grad))
    return out


def _public_state_grad(model, g):
    """A torch-layout gradient of a state part in the model's own layout."""
    return g[0] if model._flat_state else g


def _live(model, lengths, T, N, tdt):
    """(T, N) (batch-first: (N, T)) float tensor 1 for steps inside each sequence, or None."""
    if lengths is None:
        return None
    live = np.arange(T)[:, None] < np.asarray(lengths)[None, :]
    return torch.as_tensor(live.T if model.batch_first else live).to(tdt)


def _drops(model, masks, tdt):
    """Given keep masks (model's layout) as scaled tensors, or None."""
    if masks is None or model.num_layers == 1:
        return None
    return [torch.as_tensor(np.asarray(m, dtype=np.float64) * model._dropout_scale()).to(tdt) for m in masks]


def _pack(x, lengths, batch_first):
    return pack_padded_sequence(x, torch.as_tensor(np.asarray(lengths), dtype=torch.int64),
                                batch_first=batch_first, enforce_sorted=False)


def _call(kind, module, inp, state, pdict=None):
    """``module(inp, state)`` (``functional_call`` with ``pdict``): ``(out, [h_n(, c_n)])``."""
    hx = (state[0], state[1]) if kind == "LSTM" else state[0]
    if pdict is None:
        out, hn = module(inp, hx)
    else:
        out, hn = torch.func.functional_call(module, pdict, (inp, hx))
    return out, (list(hn) if kind == "LSTM" else [hn])


def _run_stack(model, mods, x, state, lengths, drops, pdicts=None):
    """torch's ``(out, [h_n(, c_n)])`` of the whole model on ``x`` (model's layout) from ``state`` (torch
    layout): one module (``mods = [core]``), or one per layer with the dropout masks between them. With
    lengths the sequence is packed once, stays packed between layers (the masks packed alike, as torch's
    module drops out its packed data) and is padded back to T steps at the end."""
    kind = _kind(model)
    bf = model.batch_first
    T = x.shape[1] if bf else x.shape[0]
    D = model.num_directions
    inp = x if lengths is None else _pack(x, lengths, bf)
    finals = [[] for _ in state]
    out = None
    for l, module in enumerate(mods):
        st = state if len(mods) == 1 else [s[l * D : (l + 1) * D] for s in state]
        out, fin = _call(kind, module, inp, st, None if pdicts is None else pdicts[l])
        for i, f in enumerate(fin):
            finals[i].append(f)
        if l < len(mods) - 1:
            inp = out
            if drops is not None:
                if lengths is None:
                    inp = out * drops[l]
                else:
                    mask = _pack(drops[l], lengths, bf).data
                    inp = PackedSequence(out.data * mask, out.batch_sizes, out.sorted_indices,
                                         out.unsorted_indices)
    if lengths is not None:
        out, _ = pad_packed_sequence(out, batch_first=bf, total_length=T)
    return out, [torch.cat(f, dim=0) for f in finals]


def _modules(model, tdt, dropout_masks, split_bias=True):
    """``[core]`` (no masks) or the per-layer modules (masks given), and the head."""
    core, head = build_recurrent(model, dtype=tdt, split_bias=split_bias)
    if dropout_masks is not None and model.num_layers > 1:
        return build_layers(model, dtype=tdt, split_bias=split_bias), head
    return [core], head


def _step_losses(model, head, hs, Yt, mask_t):
    """``E_tn : (T', N)`` from the outputs ``hs (T', N, F)`` (masked; any two leading axes)."""
    return _losses_from_logits(model, head(hs), Yt, mask_t)


def _losses_from_logits(model, q, Yt, mask_t):
    """``E_tn : (T', N)`` from the logits ``q (T', N, K)``, masked: torch's functional losses."""
    T, N, K = q.shape
    if model.loss_name == "cross_entropy":
        E = F.cross_entropy(q.reshape(T * N, K), Yt.reshape(T * N), reduction="none").reshape(T, N)
    else:
        E = 0.5 * F.mse_loss(q, Yt, reduction="none").sum(dim=-1)
    return E if mask_t is None else E * mask_t


def _mask(mask, T, N, tdt):
    return None if mask is None else torch.as_tensor(np.asarray(mask, dtype=bool)).to(tdt)


def _loss_mask(model, mask, lengths, T, N, tdt):
    m = _mask(mask, T, N, tdt)
    live = _live(model, lengths, T, N, tdt)
    if live is None:
        return m
    return live if m is None else m * live


def _torch_grads_to_ours(model, mods, head, state0, x=None):
    """autograd's ``.grad`` of the modules (and head, state0, x) under our names (0 where none)."""
    g = {}
    if len(mods) == 1:
        names = {v: k for k, v in model.param_names().items() if not v.startswith("head.")}
        for name, p in mods[0].named_parameters():
            if name in names:
                g[names[name]] = p.grad
    else:
        for l, module in enumerate(mods):
            names = _layer_names(model, l)
            for name, p in module.named_parameters():
                if name in names:
                    g[names[name]] = p.grad
    if head is not None:
        g["V"], g["c"] = head.weight.grad, head.bias.grad
    out = {k: (np.zeros(model.params[k].shape) if v is None else v.detach().numpy().copy())
           for k, v in g.items()}
    for part, s in zip(model.STATES, state0):
        gs = np.zeros(tuple(s.shape)) if s.grad is None else s.grad.detach().numpy().copy()
        out[f"{part}0"] = gs
    return out


def _step_run(model, mods, x_tm, states, live, drops, start, stop):
    """One-direction stack, time-major, one step at a time from ``states`` ([layer][part] (N, size)) over
    steps start..stop-1; a finished sequence keeps its state (``torch.where``) and outputs 0. Returns the top
    layer's outputs (one (N, F) per step) and every step's states."""
    kind = _kind(model)
    outs, history = [], []
    for s in range(start, stop):
        inp = x_tm[s : s + 1]
        new = []
        y = None
        for l, module in enumerate(mods):
            out, fin = _call(kind, module, inp, [p[None] for p in states[l]])
            fin = [f[0] for f in fin]
            y = out[0]
            if live is not None:
                keep = live[s][:, None] > 0
                fin = [torch.where(keep, f, p) for f, p in zip(fin, states[l])]
                y = y * keep
            new.append(fin)
            if l < len(mods) - 1:
                inp = (y if drops is None else y * drops[l][s])[None]
        states = new
        outs.append(y)
        history.append(states)
    return outs, history


def _tm(model, t):
    """A tensor in the model's layout as time-major."""
    return t.transpose(0, 1) if model.batch_first else t


def recurrent_loss_and_grad(model, X, Y, h0=None, truncate=None, mask=None, dtype=None, lengths=None,
                            dropout_masks=None):
    """Autograd's loss and gradients for ``model`` on ``(X, Y)``: ``(float, {name: ndarray})``.

    ``grads`` has the params' keys plus ``"h0"`` (and ``"c0"``) in the model's state layout. ``truncate=k``
    builds, for each t, the graph of E_t from every layer's s_{t-k-1}, detached when t-k-1 >= 1. ``dtype``
    (default: the model's) is the precision torch computes in; float64 gives an oracle for a float32 model
    too.
    ``lengths`` and ``dropout_masks`` (keep masks in out's layout) as the model's.
    """
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    x, Yt = _inputs(model, X, tdt), _targets(model, Y, tdt)
    T, N = _TN(model, X)
    loss_mask = _loss_mask(model, mask, lengths, T, N, tdt)
    drops = _drops(model, dropout_masks, tdt)
    state0 = _state0(model, h0, N, tdt)
    if truncate is None or truncate >= T - 1:
        mods, head = _modules(model, tdt, dropout_masks)
        out, _ = _run_stack(model, mods, x, state0, lengths, drops)
        loss = _step_losses(model, head, out, Yt, loss_mask).sum() / N
    else:
        k = int(truncate)
        _, head = build_recurrent(model, dtype=tdt, split_bias=True)
        mods = build_layers(model, dtype=tdt, split_bias=True, batch_first=False)
        x_tm, Y_tm = _tm(model, x), _tm(model, Yt)
        m_tm = None if loss_mask is None else _tm(model, loss_mask)
        live = _live(model, lengths, T, N, tdt)
        live = None if live is None else _tm(model, live)
        d_tm = None if drops is None else [_tm(model, d) for d in drops]
        L, D = model.num_layers, model.num_directions
        start_states = [[s[l * D] for s in state0] for l in range(L)]
        with torch.no_grad():  # every layer's state at every step, to start each E_t's graph from
            _, history = _step_run(model, mods, x_tm, start_states, live, d_tm, 0, T)
        loss = 0
        for t in range(1, T + 1):
            start = max(0, t - k - 1)
            s_start = start_states if start == 0 else [[p.detach() for p in st] for st in history[start - 1]]
            outs, _ = _step_run(model, mods, x_tm, s_start, live, d_tm, start, t)
            m = None if m_tm is None else m_tm[t - 1 : t]
            loss = loss + _step_losses(model, head, outs[-1][None], Y_tm[t - 1 : t], m).sum() / N
    loss.backward()
    grads = _torch_grads_to_ours(model, mods, head, state0)
    for part in model.STATES:
        grads[f"{part}0"] = _public_state_grad(model, grads[f"{part}0"])
    return float(loss.item()), grads


def recurrent_forward(model, X, h0=None, dtype=None, lengths=None, dropout_masks=None):
    """torch's outputs. With a head: ``(P, final)``, P (T, N, K) softmax probabilities or identity, the final
    state in ``h0``'s layout. Bare (``output_size=None``): the module's ``(out, h_n)``, h_n in torch's layout
    (LSTM: ``(h_n, c_n)``)."""
    kind = _kind(model)
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    x = _inputs(model, X, tdt)
    T, N = _TN(model, X)
    mods, head = _modules(model, tdt, dropout_masks)
    with torch.no_grad():
        out, state = _run_stack(model, mods, x, _state0(model, h0, N, tdt, grad=False), lengths,
                                _drops(model, dropout_masks, tdt))
        if head is None:
            final = tuple(s.numpy().copy() for s in state)
            return out.numpy().copy(), (final if kind == "LSTM" else final[0])
        q = head(out)
        if model.loss_name == "cross_entropy":
            q = torch.softmax(q, dim=-1)
    final = tuple(_public_state_grad(model, s.numpy().copy()) for s in state)
    return q.numpy().copy(), (final if kind == "LSTM" else final[0])


def recurrent_vanishing(model, X, Y, h0=None, dtype=None, dropout_masks=None) -> dict:
    """``||dE_T/dh_k||`` (and ``||dE_T/dc_k||`` for the LSTM), k = 0..T, from ``retain_grad`` on every state.

    E_T is the batch mean of the last step's loss; the stack runs one step at a time so that each layer's
    state is a tensor of the graph; the norm is over every layer's state at k. One direction only.
    """
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    x, Yt = _inputs(model, X, tdt), _targets(model, Y, tdt)
    T, N = _TN(model, X)
    _, head = build_recurrent(model, dtype=tdt, split_bias=True)
    mods = build_layers(model, dtype=tdt, split_bias=True, batch_first=False)
    x_tm, Y_tm = _tm(model, x), _tm(model, Yt)
    drops = _drops(model, dropout_masks, tdt)
    d_tm = None if drops is None else [_tm(model, d) for d in drops]
    state0 = _state0(model, h0, N, tdt)
    states = [[[s[l] for s in state0] for l in range(model.num_layers)]]
    for part_list in states[0]:
        for s in part_list:
            s.retain_grad()
    for t in range(1, T + 1):
        _, history = _step_run(model, mods, x_tm, states[-1], None, d_tm, t - 1, t)
        for part_list in history[-1]:
            for s in part_list:
                s.retain_grad()
        states.append(history[-1])
    E_T = _step_losses(model, head, states[-1][-1][0][None], Y_tm[T - 1 : T], None).sum() / N
    E_T.backward()
    out = {}
    for i, name in enumerate(model.STATES):
        norms = []
        for st in states:
            sq = sum(0.0 if layer[i].grad is None else float(torch.sum(layer[i].grad ** 2)) for layer in st)
            norms.append(np.sqrt(sq))
        out[name] = np.array(norms)
    return out


def _primals_and_tangents(model, mods, tangents, tdt):
    """Per module: the parameter dict (detached) and its tangent dict, from our tangents (keyed like params).

    The bias split's tangent goes to ``bias_ih`` (the sum's tangent is b'), ``bias_hh``'s is 0."""
    primal, tangent = [], []
    for l, module in enumerate(mods):
        names = ({v: k for k, v in model.param_names().items() if not v.startswith("head.")} if len(mods) == 1
                 else _layer_names(model, l))
        pd, td = {}, {}
        for name, p in module.named_parameters():
            pd[name] = p.detach()
            ours = names.get(name)
            if ours is None:  # bias_hh of the RNN/LSTM: its share of b is held in bias_ih's tangent
                td[name] = torch.zeros_like(p)
            else:
                td[name] = _t(tangents[ours], tdt)
        primal.append(pd)
        tangent.append(td)
    return primal, tangent


def _run_jvp(f, primals, tangents, packed):
    """``(value, tangent)`` of ``f(*primals)`` along ``tangents``: torch.func.jvp, or forward_ad if packed."""
    if not packed:
        return torch.func.jvp(f, primals, tangents)
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        def dual(p, t):
            if isinstance(p, dict):
                return {k: dual(p[k], t[k]) for k in p}
            if isinstance(p, (list, tuple)):
                return type(p)(dual(a, b) for a, b in zip(p, t))
            return fwAD.make_dual(p, t)

        out = f(*dual(primals, tangents))

        def split(o):
            if isinstance(o, (list, tuple)):
                parts = [split(a) for a in o]
                return type(o)(a for a, _ in parts), type(o)(b for _, b in parts)
            u = fwAD.unpack_dual(o)
            return u.primal.clone(), (torch.zeros_like(u.primal) if u.tangent is None else u.tangent.clone())

        return split(out)


def recurrent_jvp(model, X, Y, tangents, h0=None, mask=None, dtype=None, lengths=None, dropout_masks=None):
    """Forward mode of the loss along ``tangents`` (keyed like params, optionally ``"h0"``/``"c0"`` in the
    state's layout): ``torch.func.jvp`` (torch's forward-mode AD for packed sequences)."""
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    mods, head = _modules(model, tdt, dropout_masks)
    x, Yt = _inputs(model, X, tdt), _targets(model, Y, tdt)
    T, N = _TN(model, X)
    loss_mask = _loss_mask(model, mask, lengths, T, N, tdt)
    drops = _drops(model, dropout_masks, tdt)
    state0 = [s.detach() for s in _state0(model, h0, N, tdt, grad=False)]
    primal, tangent = _primals_and_tangents(model, mods, tangents, tdt)
    hp = {"weight": head.weight.detach(), "bias": head.bias.detach()}
    ht = {"weight": _t(tangents["V"], tdt), "bias": _t(tangents["c"], tdt)}
    s_tans = [(_t(tangents[f"{p}0"], tdt).reshape(s.shape) if f"{p}0" in tangents else torch.zeros_like(s))
              for p, s in zip(model.STATES, state0)]  # the model's layout or torch's: the same numbers

    def f(pdicts, hdict, s0):
        out, _ = _run_stack(model, mods, x, list(s0), lengths, drops, pdicts=list(pdicts))
        q = torch.func.functional_call(head, hdict, (out,))
        Tq, Nq, K = q.shape
        if model.loss_name == "cross_entropy":
            E = F.cross_entropy(q.reshape(Tq * Nq, K), Yt.reshape(Tq * Nq), reduction="none").reshape(Tq, Nq)
        else:
            E = 0.5 * F.mse_loss(q, Yt, reduction="none").sum(dim=-1)
        if loss_mask is not None:
            E = E * loss_mask
        return E.sum() / N

    value, dvalue = _run_jvp(f, (tuple(primal), hp, tuple(state0)), (tuple(tangent), ht, tuple(s_tans)),
                             lengths is not None)
    return float(value.item()), float(dvalue.item())


def recurrent_module_jvp(model, X, tangents, h0=None, dtype=None, lengths=None, dropout_masks=None):
    """The bare module's forward mode: ``((out, h_n), (d_out, d_hn))`` as NumPy, torch's state layout (LSTM:
    ``h_n``, ``d_hn`` are pairs). X's tangent is 0 (X is data); ``tangents`` keyed like the cells' params,
    optionally ``"h0"``/``"c0"`` in torch's layout."""
    kind = _kind(model)
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    mods, _ = _modules(model, tdt, dropout_masks)
    x = _inputs(model, X, tdt)
    T, N = _TN(model, X)
    drops = _drops(model, dropout_masks, tdt)
    state0 = [s.detach() for s in _state0(model, h0, N, tdt, grad=False)]
    primal, tangent = _primals_and_tangents(model, mods, tangents, tdt)
    s_tans = [(_t(tangents[f"{p}0"], tdt).reshape(s.shape) if f"{p}0" in tangents else torch.zeros_like(s))
              for p, s in zip(model.STATES, state0)]

    def f(pdicts, s0):
        out, fin = _run_stack(model, mods, x, list(s0), lengths, drops, pdicts=list(pdicts))
        return (out,) + tuple(fin)

    value, dvalue = _run_jvp(f, (tuple(primal), tuple(state0)), (tuple(tangent), tuple(s_tans)),
                             lengths is not None)
    value = [v.detach().numpy().copy() for v in value]
    dvalue = [v.detach().numpy().copy() for v in dvalue]
    if kind == "LSTM":
        return (value[0], (value[1], value[2])), (dvalue[0], (dvalue[1], dvalue[2]))
    return (value[0], value[1]), (dvalue[0], dvalue[1])


def recurrent_module_vjp(model, X, d_out, d_hn=None, h0=None, dtype=None, lengths=None, dropout_masks=None):
    """``torch.autograd.grad`` of ``sum(out * d_out) + sum(h_n * d_hn)`` (LSTM: ``d_hn = (d_h, d_c)``) with
    respect to the module's parameters (our names), X (``"X"``, dense only) and the initial state (``"h0"``,
    ``"c0"``, torch's layout)."""
    kind = _kind(model)
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    mods, _ = _modules(model, tdt, dropout_masks)
    dense = not np.issubdtype(np.asarray(X).dtype, np.integer)
    x = _inputs(model, X, tdt).requires_grad_(dense)
    T, N = _TN(model, X)
    state0 = _state0(model, h0, N, tdt)
    out, fin = _run_stack(model, mods, x, state0, lengths, _drops(model, dropout_masks, tdt))
    outputs, grad_outputs = [out], [_t(d_out, tdt)]
    if d_hn is not None:
        parts = list(d_hn) if kind == "LSTM" else [d_hn]
        for f_, g in zip(fin, parts):
            if g is not None:
                outputs.append(f_)
                grad_outputs.append(_t(g, tdt).reshape(f_.shape))
    params = []
    for l, module in enumerate(mods):
        names = ({v: k for k, v in model.param_names().items() if not v.startswith("head.")} if len(mods) == 1
                 else _layer_names(model, l))
        params += [(names[n], p) for n, p in module.named_parameters() if n in names]
    inputs = [p for _, p in params] + state0 + ([x] if dense else [])
    gs = torch.autograd.grad(outputs, inputs, grad_outputs, allow_unused=True)

    def arr(g, like):
        return np.zeros(tuple(like.shape)) if g is None else g.detach().numpy().copy()

    grads = {name: arr(g, p) for (name, p), g in zip(params, gs)}
    if dense:
        grads["X"] = arr(gs[-1], x)
    for i, part in enumerate(model.STATES):
        grads[f"{part}0"] = arr(gs[len(params) + i], state0[i])
    return grads


def recurrent_train_chunks(model, X, Y, chunk, lr, h0=None, truncate=None, mask=None, dtype=None):
    """Train on one long sequence in chunks of ``chunk`` steps, carrying the final state ``.detach()``-ed.

    Each chunk: autograd's gradient of that chunk's loss (optionally truncated within it), then plain SGD
    ``p -= lr * grad`` on every parameter (of ours: torch's two biases move together as our ``b``). Returns
    ``(losses, params, final_state)`` in our layout; the model itself is not changed. Time-major models.
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
