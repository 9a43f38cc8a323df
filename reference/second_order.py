"""torch oracle for ``manual_bp.MLP``'s second-order products: Hessian-vector and Gauss-Newton-vector.

Both run torch's own ``nn.Linear`` layers (``reference.mlp.build_mlp``, with our weights copied in) through
``torch.func.functional_call``, so that the parameters are function arguments that ``torch.func``
differentiates:

- ``mlp_hvp``: forward-over-reverse, ``jvp(grad(E), theta; v)`` = H v (and, with ``v["X"]``, the mixed
  term d/dX grad_theta E · v_X, as ours).
- ``mlp_hvp_double_backward``: reverse-over-reverse, ``autograd.grad(grad(E) · v, theta)`` (the classic
  double-backward HVP, for the benchmark).
- ``mlp_gvp``: G v = J^T H_L J v with the split output o(theta) = z^(L) (logits), or a^(L) = f(z^(L)) for
  squared error on a non-identity output (Schraudolph's split, as ``manual_bp.MLP.gvp``): J v by
  ``torch.func.jvp`` of o, H_L (J v) by ``jvp(grad(loss in o))`` (torch differentiates the loss, nothing of
  ours), J^T by ``torch.func.vjp`` of o.

Nothing here re-types our R-operator formulas.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from .mlp import _ACT, _as_torch_inputs, _logits, _loss_from_logits, _torch_dtype, build_mlp


class _Logits(nn.Module):
    """``reference.mlp._logits`` as a module, so ``functional_call`` can swap the nn.Linear parameters."""

    def __init__(self, net, layers):
        super().__init__()
        self.net = net
        self.layers = layers

    def forward(self, x):
        return _logits(self.net, self.layers, x)


def _setup(net, X, Y, v, dtype):
    """The module, torch inputs, our-name -> torch-name map, primals and tangents (dicts of tensors)."""
    tdt = _torch_dtype(net.dtype if dtype is None else dtype)
    module = _Logits(net, build_mlp(net, dtype=tdt))
    Xt, Yt = _as_torch_inputs(net, X, Y, tdt)
    names = {}
    for l in range(1, len(net.sizes)):
        names[f"W{l}"] = f"layers.{l - 1}.weight"
        names[f"b{l}"] = f"layers.{l - 1}.bias"
    primals = {tn: p.detach() for tn, p in module.named_parameters()}
    tans = {tn: torch.as_tensor(np.asarray(v[ours], dtype=np.float64)).to(tdt) for ours, tn in names.items()}
    vX = None
    if v.get("X") is not None:
        vX = torch.as_tensor(np.asarray(v["X"], dtype=np.float64)).to(tdt)
    return module, Xt, Yt, names, primals, tans, vX


def _to_ours(names, tensors):
    return {ours: tensors[tn].detach().numpy().copy() for ours, tn in names.items()}


def mlp_hvp(net, X, Y, v, dtype=None):
    """``(E, grads, Hv)`` by ``torch.func.jvp`` of ``torch.func.grad`` (forward-over-reverse).

    ``v`` is keyed like ``net.params`` and may carry ``"X"`` (then the input moves along it too; the product
    is still the derivative of the parameter gradient).
    """
    from torch.func import functional_call, grad, jvp

    module, Xt, Yt, names, primals, tans, vX = _setup(net, X, Y, v, dtype)

    def loss(p, x):
        return _loss_from_logits(net, functional_call(module, p, (x,)), Yt)

    def grad_and_loss(p, x):
        return grad(loss, has_aux=False)(p, x), loss(p, x)

    tx = torch.zeros_like(Xt) if vX is None else vX
    (g, E), (Hv, _) = jvp(grad_and_loss, (primals, Xt), (tans, tx))
    return float(E.item()), _to_ours(names, g), _to_ours(names, Hv)


def mlp_hvp_double_backward(net, X, Y, v, dtype=None):
    """H v by reverse-over-reverse: ``autograd.grad(sum(grad E * v), theta)`` on the nn.Linear modules."""
    tdt = _torch_dtype(net.dtype if dtype is None else dtype)
    layers = build_mlp(net, dtype=tdt)
    Xt, Yt = _as_torch_inputs(net, X, Y, tdt)
    params = list(layers.parameters())
    order = [f"{w}{l}" for l in range(1, len(net.sizes)) for w in ("W", "b")]
    vs = [torch.as_tensor(np.asarray(v[k], dtype=np.float64)).to(tdt) for k in order]
    E = _loss_from_logits(net, _logits(net, layers, Xt), Yt)
    g = torch.autograd.grad(E, params, create_graph=True)
    gv = sum((gi * vi).sum() for gi, vi in zip(g, vs))
    Hv = torch.autograd.grad(gv, params)
    return {k: h.numpy().copy() for k, h in zip(order, Hv)}


def _split_at_activations(net) -> bool:
    """Schraudolph's split: squared error on a non-identity output is split at a = f(z), not at z."""
    return net.loss_name == "squared_error" and net.output_activation != "identity"


def mlp_gvp(net, X, Y, v, dtype=None):
    """Gauss-Newton product ``J^T H_L J v`` (see the module docstring), keyed like ``net.params``."""
    from torch.func import functional_call, grad, jvp, vjp

    module, Xt, Yt, names, primals, tans, vX = _setup(net, X, Y, v, dtype)
    split_a = _split_at_activations(net)

    def output(p, x):
        z = functional_call(module, p, (x,))
        return _ACT[net.output_activation](z) if split_a else z

    # the loss as a function of the split output: 1/2 ||y - a||^2 / N in a (an identity "output activation"),
    # or torch's loss of the logits
    loss_net = SimpleNamespace(loss_name="squared_error", output_activation="identity") if split_a else net

    def loss_of_output(o):
        return _loss_from_logits(loss_net, o, Yt)

    tx = torch.zeros_like(Xt) if vX is None else vX
    o, Jv = jvp(output, (primals, Xt), (tans, tx))  # J v
    _, HJv = jvp(grad(loss_of_output), (o,), (Jv,))  # H_L J v
    _, pullback = vjp(lambda p: output(p, Xt), primals)
    (Gv,) = pullback(HJv)  # J^T H_L J v
    return _to_ours(names, Gv)
