"""Weights that move both ways between manual_bp and torch: ``from_torch``, ``to_torch``, ``torch_grads``.

This module never imports torch: torch objects are read through ``state_dict()`` and their attributes alone,
each tensor converted with ``np.asarray(t.detach().cpu())``, and ``to_torch`` asks the oracle's builders
(``manual_bp.reference``, which does import torch) for the modules.

Recurrent models (``RNN/LSTM/GRU.from_torch``, ``.to_torch()``, ``.torch_grads()`` call these):

- ``recurrent_from_torch(cls, module, head=None, ...)``: the model of class ``cls`` with the module's
  configuration (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size,
  nonlinearity), its training mode and its weights; for the RNN and LSTM ``b = bias_ih + bias_hh`` (only the
  sum enters their equations, recurrent.py); an ``nn.Linear`` head becomes V, c (``output_size`` = its
  out_features), no head gives the bare module (``output_size=None``).
- ``recurrent_to_torch(model)``: torch's module (``bias_hh = 0`` for the RNN and LSTM, so that the sum is b)
  and, with a head, ``(module, head)``.
- ``recurrent_torch_grads(model, grads)``: our gradient dict under torch's names (``model.param_names()``):
  ``weight_ih_l0``, ``bias_hh_l1_reverse`` (= our ``b_l1_reverse``'s for the RNN and LSTM, the same as
  ``bias_ih_l1_reverse``), ``weight_hr_l0``; the head's ``"head.weight"``, ``"head.bias"``; ``"h0"``/``"c0"``
  in torch's state layout ``(D*num_layers, N, H_out)``; ``"X"`` as it is.

The MLP (an ``nn.Sequential`` of ``nn.Linear`` layers and the activations nn.Sigmoid, nn.Tanh, nn.ReLU,
nn.Softplus (beta=1), nn.Identity):

- ``mlp_from_torch(seq, loss=..., ...)``: layer l's ``nn.Linear`` becomes ``W{l}, b{l}``; the module between
  two Linears is the hidden activation (the same for all; none or nn.Identity: identity), the one after the
  last Linear the output activation (none: identity). With ``loss="cross_entropy"`` the sequence ends in a
  Linear (logits, as for ``nn.CrossEntropyLoss``) and the MLP's output is softmax; with
  ``"binary_cross_entropy"`` it ends in nn.Sigmoid (``nn.BCELoss``) or a Linear (``nn.BCEWithLogitsLoss``),
  and the MLP's output is sigmoid.
- ``mlp_to_torch(net)``: ``nn.Sequential(Linear, act, Linear, act, ..., Linear[, out])``: each hidden
  activation a module (nn.Identity for identity); after the last Linear the output activation's module, none
  for identity and for softmax (the logits; pair it with ``nn.CrossEntropyLoss``).
- ``mlp_torch_grads(net, grads, module=None)``: ``W{l}, b{l}`` as ``"{i}.weight", "{i}.bias"``, i the index of
  the l-th Linear in ``module`` (default: the layout ``mlp_to_torch`` builds); ``"X"`` as it is.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_dtype

#: our recurrent class -> torch's ``module.mode`` values
_MODES = {"RNN": ("RNN_TANH", "RNN_RELU"), "LSTM": ("LSTM",), "GRU": ("GRU",)}


def _np(t) -> np.ndarray:
    return np.asarray(t.detach().cpu())


def _kind(cls) -> str:
    for base in cls.__mro__:
        if base.__name__ in _MODES:
            return base.__name__
    raise TypeError(f"{cls.__name__} is not an RNN, LSTM or GRU")


def _dtype_of(array, dtype):
    """The model dtype: the one asked for, else the torch weights' (float32 or float64)."""
    if dtype is not None:
        return check_dtype(dtype)
    dt = np.dtype(array.dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"the torch weights are {dt}; pass dtype=np.float32 or np.float64 to convert them")
    return dt


def _attr(module, name, kind):
    if not hasattr(module, name):
        raise TypeError(f"module must be a torch nn.{kind}; got {type(module).__name__} "
                        f"(no attribute {name!r})")
    return getattr(module, name)


def recurrent_from_torch(cls, module, head=None, loss="cross_entropy", dtype=None, seed=None):
    """``cls`` (RNN, LSTM or GRU) from a torch module of the same kind and an optional nn.Linear head."""
    kind = _kind(cls)
    mode = getattr(module, "mode", None)
    if mode not in _MODES[kind]:
        raise TypeError(f"module must be a torch nn.{kind}; got {type(module).__name__}"
                        + (f" (mode {mode!r})" if mode is not None else ""))
    sd = {k: _np(v) for k, v in module.state_dict().items()}
    dtype = _dtype_of(sd["weight_ih_l0"], dtype)
    kw = {
        "num_layers": int(_attr(module, "num_layers", kind)),
        "bidirectional": bool(_attr(module, "bidirectional", kind)),
        "batch_first": bool(_attr(module, "batch_first", kind)),
        "bias": bool(_attr(module, "bias", kind)),
        "dropout": float(_attr(module, "dropout", kind)),
    }
    if kind == "LSTM" and int(getattr(module, "proj_size", 0)):
        kw["proj_size"] = int(module.proj_size)
    if kind == "RNN":
        kw["nonlinearity"] = "relu" if mode == "RNN_RELU" else "tanh"
    K = None
    head_sd = None
    if head is not None:
        head_sd = {k: _np(v) for k, v in head.state_dict().items()} if hasattr(head, "state_dict") else {}
        if set(head_sd) != {"weight", "bias"}:
            raise TypeError(f"head must be a torch nn.Linear with a bias (weight and bias); got "
                            f"{type(head).__name__} with {sorted(head_sd)}")
        K = int(head_sd["weight"].shape[0])
    model = cls(int(module.input_size), int(module.hidden_size), K, loss=loss, dtype=dtype, seed=seed, **kw)
    if head_sd is not None and head_sd["weight"].shape != model.params["V"].shape:
        raise ValueError(f"head.weight must have shape (K, D*H_out={model.output_features}) to read the "
                         f"module's output; got {head_sd['weight'].shape}")
    params = {}
    for ours, theirs in model.param_names().items():
        if theirs.startswith("head."):
            value = head_sd[theirs[len("head."):]]
        elif kind != "GRU" and theirs.startswith("bias_ih"):
            # b = b_ih + b_hh, summed in float64
            value = sd[theirs].astype(np.float64) + sd[theirs.replace("bias_ih", "bias_hh")]
        else:
            value = sd[theirs]
        if value.shape != model.params[ours].shape:
            raise ValueError(f"{theirs} must have shape {model.params[ours].shape}; got {value.shape}")
        params[ours] = np.array(value, dtype=dtype)
    model.params = params
    model.training = bool(module.training)
    return model


def recurrent_to_torch(model):
    """torch's ``nn.RNN/LSTM/GRU`` (and ``nn.Linear`` head) holding copies of the model's weights, built by
    the oracle's own builder (``manual_bp.reference.build_recurrent``: ``bias_hh = 0``, so the sum is b),
    every parameter trainable, in the model's training mode. Needs torch; this module never imports it."""
    from .reference import build_recurrent

    core, head = build_recurrent(model)
    for module in (core, head):
        if module is not None:
            for p in module.parameters():
                p.requires_grad_(True)  # the oracle freezes the zero bias_hh; a user's module trains it
            module.train(model.training)
    return core if head is None else (core, head)


def recurrent_torch_grads(model, grads) -> dict:
    """Our gradient dict (from ``loss_and_grad`` or ``vjp``) under torch's names (module docstring)."""
    if not isinstance(grads, dict):
        raise TypeError(f"grads must be a dict of arrays keyed like params; got {type(grads).__name__}")
    names = model.param_names()
    states = tuple(f"{p}0" for p in model.STATES)
    unknown = [k for k in grads if k not in names and k not in states and k != "X"]
    if unknown:
        raise ValueError(f"grads has keys that are not {type(model).__name__} parameters or states: "
                         f"{sorted(unknown)}")
    out = {}
    kind = _kind(type(model))
    for ours, theirs in names.items():
        if ours not in grads:
            continue
        g = np.asarray(grads[ours])
        out[theirs] = g
        if kind != "GRU" and theirs.startswith("bias_ih"):
            out[theirs.replace("bias_ih", "bias_hh")] = g.copy()  # dE/db_hh = dE/db_ih = dE/db
    for key in states:
        if key in grads:
            g = np.asarray(grads[key])
            out[key] = g[None] if g.ndim == 2 else g  # torch's (D*num_layers, N, H_out)
    if "X" in grads:
        out["X"] = np.asarray(grads["X"])
    return out


# ---------------------------------------------------------------------------------------------- the MLP
_ACTIVATION_MODULES = {"Sigmoid": "sigmoid", "Tanh": "tanh", "ReLU": "relu", "Softplus": "softplus",
                       "Identity": "identity"}

def _mlp_layout(seq):
    """``(linears, hidden, output)``: the Sequential's ``(index, Linear)`` pairs and activation names."""
    children = list(seq.named_children()) if hasattr(seq, "named_children") else None
    if children is None:
        raise TypeError(f"seq must be a torch nn.Sequential; got {type(seq).__name__}")
    linears, gaps, current = [], [], []
    for name, mod in children:
        cname = type(mod).__name__
        if cname == "Linear":
            if linears:
                gaps.append(current)
            linears.append((name, mod))
            current = []
        elif cname in _ACTIVATION_MODULES:
            if cname == "Softplus" and (getattr(mod, "beta", 1) != 1):
                raise ValueError(f"nn.Softplus must have beta=1 (the MLP's softplus); got beta={mod.beta}")
            if not linears:
                raise ValueError(f"seq must start with an nn.Linear; got {cname} at {name!r}")
            current.append(_ACTIVATION_MODULES[cname])
        else:
            raise TypeError(f"seq may hold nn.Linear and {sorted(_ACTIVATION_MODULES)} only; got {cname} at "
                            f"{name!r}")
    if not linears:
        raise ValueError("seq must hold at least one nn.Linear")

    def one(acts, where):
        acts = [a for a in acts if a != "identity"] or ["identity"]
        if len(acts) > 1:
            raise ValueError(f"{where} has {len(acts)} activations in a row ({acts}); the MLP has one")
        return acts[0]

    hidden = {one(g, f"the gap after Linear {i}") for i, g in enumerate(gaps)}
    if len(hidden) > 1:
        raise ValueError(f"the MLP has one hidden activation; seq uses {sorted(hidden)}")
    return linears, (hidden.pop() if hidden else "sigmoid"), one(current, "the output"), bool(current)


def mlp_from_torch(seq, loss="squared_error", dtype=None, seed=None, cls=None):
    """An MLP (``cls``, default ``manual_bp.MLP``) with the Sequential's layers, activations and weights."""
    if cls is None:
        from .mlp import MLP as cls
    linears, hidden, output, has_out = _mlp_layout(seq)
    if loss == "cross_entropy":
        if has_out and output != "identity":
            raise ValueError(f"loss='cross_entropy' takes a Sequential that ends in its logits (an "
                             f"nn.Linear); got a final {output}")
        output = "softmax"
    elif loss == "binary_cross_entropy":
        if output not in ("identity", "sigmoid"):
            raise ValueError(f"loss='binary_cross_entropy' takes a Sequential that ends in nn.Sigmoid or its "
                             f"logits; got a final {output}")
        output = "sigmoid"
    sds = [{k: _np(v) for k, v in lin.state_dict().items()} for _, lin in linears]
    for (name, _), sd in zip(linears, sds):
        if "bias" not in sd:
            raise ValueError(f"Linear {name!r} has no bias; the MLP's layers all have one")
    dtype = _dtype_of(sds[0]["weight"], dtype)
    sizes = [int(sds[0]["weight"].shape[1])] + [int(sd["weight"].shape[0]) for sd in sds]
    for l in range(1, len(sds)):
        if sds[l]["weight"].shape[1] != sizes[l]:
            raise ValueError(f"Linear {linears[l][0]!r} takes {sds[l]['weight'].shape[1]} inputs; the layer "
                             f"below gives {sizes[l]}")
    net = cls(sizes, hidden, output, loss, dtype=dtype, seed=seed)
    net.params = {}
    for l, sd in enumerate(sds, start=1):
        net.params[f"W{l}"] = np.array(sd["weight"], dtype=dtype)
        net.params[f"b{l}"] = np.array(sd["bias"], dtype=dtype)
    return net


def mlp_to_torch(net):
    """``nn.Sequential`` with the MLP's weights and activation modules (module docstring for its layout),
    built by the oracle (``manual_bp.reference.mlp_module``). Needs torch; this module never imports it."""
    from .reference import mlp_module

    return mlp_module(net)


def mlp_torch_grads(net, grads, module=None) -> dict:
    """The MLP's gradient dict under the Sequential's names (``"0.weight"``, ...)."""
    if module is not None:
        indices = [name for name, _ in _mlp_layout(module)[0]]
    else:
        indices, i = [], 0
        for l in range(1, net.L + 1):
            indices.append(str(i))
            act = net.hidden_activation if l < net.L else net.output_activation
            i += 1 + (1 if (l < net.L or act not in ("identity", "softmax")) else 0)
    if len(indices) != net.L:
        raise ValueError(f"module has {len(indices)} Linear layers; the MLP has {net.L}")
    out = {}
    for l, name in enumerate(indices, start=1):
        for ours, theirs in ((f"W{l}", "weight"), (f"b{l}", "bias")):
            if ours in grads:
                out[f"{name}.{theirs}"] = np.asarray(grads[ours])
    if "X" in grads:
        out["X"] = np.asarray(grads["X"])
    return out
