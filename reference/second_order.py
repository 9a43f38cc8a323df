"""torch oracle for ``manual_bp.MLP``'s second-order products: Hessian-vector and Gauss-Newton-vector.

Both differentiate torch's own ``nn.Linear`` layers (``reference.mlp.build_mlp``, our weights copied in,
run by ``reference.mlp._logits``) and torch's functional losses (``reference.mlp._loss_from_logits``) with
autograd; nothing here re-types our R-operator formulas.

- ``mlp_hvp``: reverse-over-reverse (double backward): g = dE/d(theta, X) with ``create_graph=True``, then
  H v = d(g . (v, v_X))/dtheta. With ``v["X"]`` the product is the parameter block of the Hessian in
  (theta, X) times (v, v_X), i.e. d/dr grad_theta E(theta + r v, X + r v_X), as ours.
- ``mlp_gvp``: G v = J^T H_L J v with the split output o(theta) = z^(L) (logits), or a^(L) = f(z^(L)) for
  squared error on a non-identity output (Schraudolph's split, as ``manual_bp.MLP.gvp``). J v by the
  double-backward trick (J v = d/du [(J^T u) . v]), H_L (J v) by double backward of torch's loss in o, and
  J^T by one more backward of o with H_L J v as its upstream gradient.

Why plain autograd rather than ``torch.func`` (``jvp(grad(E))`` through ``functional_call``, which gives the
same products): ``torch.func.grad`` and ``torch.func.vjp`` import some 800 modules on their first call (about
1.7 s), and the forward-over-reverse route cost about 3x more per call on the test suite's small nets.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from .mlp import _ACT, _as_torch_inputs, _logits, _loss_from_logits, _torch_dtype, build_mlp

_ORDER = ("W", "b")


def _names(net) -> list:
    """Our parameter names in the order of ``nn.Sequential.parameters()``: W1, b1, W2, b2, ..."""
    return [f"{w}{l}" for l in range(1, len(net.sizes)) for w in _ORDER]


def _tensor(arr, tdt):
    return torch.as_tensor(np.asarray(arr, dtype=np.float64)).to(tdt)


def _setup(net, X, Y, v, dtype):
    """torch's modules with our weights, the inputs, and the direction v over the parameters (and X if given):
    ``(tdt, layers, Xt, Yt, names, params, wrt, vs)``."""
    tdt = _torch_dtype(net.dtype if dtype is None else dtype)
    layers = build_mlp(net, dtype=tdt)
    Xt, Yt = _as_torch_inputs(net, X, Y, tdt)
    names, params = _names(net), list(layers.parameters())
    vs = [_tensor(v[k], tdt) for k in names]
    wrt = params
    if v.get("X") is not None:
        Xt.requires_grad_(True)
        wrt = params + [Xt]
        vs.append(_tensor(v["X"], tdt))
    return tdt, layers, Xt, Yt, names, params, wrt, vs


def mlp_hvp(net, X, Y, v, dtype=None):
    """``(E, grads, Hv)`` by double backward on the nn.Linear modules; ``v`` keyed like params (+ ``"X"``)."""
    tdt, layers, Xt, Yt, names, params, wrt, vs = _setup(net, X, Y, v, dtype)
    E = _loss_from_logits(net, _logits(net, layers, Xt), Yt)
    g = torch.autograd.grad(E, wrt, create_graph=True)
    gv = sum((gi * vi).sum() for gi, vi in zip(g, vs))
    Hv = torch.autograd.grad(gv, params)
    return (
        float(E.item()),
        {k: t.detach().numpy().copy() for k, t in zip(names, g)},
        {k: t.numpy().copy() for k, t in zip(names, Hv)},
    )


def mlp_hvp_double_backward(net, X, Y, v, dtype=None):
    """H v alone by double backward (the benchmark's torch baseline), keyed like params."""
    return mlp_hvp(net, X, Y, {k: v[k] for k in _names(net)}, dtype)[2]


def _split_at_activations(net) -> bool:
    """Schraudolph's split: squared error on a non-identity output is split at a = f(z), not at z."""
    return net.loss_name == "squared_error" and net.output_activation != "identity"


def mlp_gvp(net, X, Y, v, dtype=None):
    """Gauss-Newton product ``J^T H_L J v`` (see the module docstring), keyed like ``net.params``."""
    tdt, layers, Xt, Yt, names, params, wrt, vs = _setup(net, X, Y, v, dtype)
    z = _logits(net, layers, Xt)
    o = _ACT[net.output_activation](z) if _split_at_activations(net) else z
    # J v = d/du [(J^T u) . v] at any u (J^T u is linear in u)
    u = torch.zeros_like(o, requires_grad=True)
    JTu = torch.autograd.grad(o, wrt, grad_outputs=u, create_graph=True)
    Jv = torch.autograd.grad(sum((a * b).sum() for a, b in zip(JTu, vs)), u)[0]
    # H_L J v: double backward of torch's loss in the split output (1/2 ||y - a||^2 / N in a, with an
    # identity "output activation", or the loss of the logits)
    loss_net = (
        SimpleNamespace(loss_name="squared_error", output_activation="identity")
        if _split_at_activations(net)
        else net
    )
    o_leaf = o.detach().requires_grad_(True)
    (dl,) = torch.autograd.grad(_loss_from_logits(loss_net, o_leaf, Yt), o_leaf, create_graph=True)
    (HJv,) = torch.autograd.grad((dl * Jv).sum(), o_leaf)
    Gv = torch.autograd.grad(o, params, grad_outputs=HJv)  # J^T H_L J v
    return {k: t.numpy().copy() for k, t in zip(names, Gv)}
