"""torch oracle for ``manual_bp.MLP``: ``nn.Linear`` layers, torch activations, ``torch.nn.functional``
losses."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_ACT = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "identity": lambda z: z,
    "softplus": F.softplus,
}


def _torch_dtype(dtype):
    """numpy or torch float dtype -> torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


def build_mlp(net, dtype=None) -> nn.Sequential:
    """``nn.Sequential`` of ``nn.Linear`` layers holding copies of ``net.params`` (activations apart)."""
    tdt = _torch_dtype(net.dtype if dtype is None else dtype)
    layers = []
    for l in range(1, len(net.sizes)):
        lin = nn.Linear(net.sizes[l - 1], net.sizes[l], dtype=tdt)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.asarray(net.params[f"W{l}"], dtype=np.float64)))
            lin.bias.copy_(torch.from_numpy(np.asarray(net.params[f"b{l}"], dtype=np.float64)))
        layers.append(lin)
    return nn.Sequential(*layers)


#: our activation -> torch's module class
_MODULE = {
    "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus, "identity": nn.Identity
}


def mlp_module(net, dtype=None) -> nn.Sequential:
    """``nn.Sequential(Linear, act, ..., Linear[, out])`` with copies of ``net.params``: ``build_mlp``'s
    layers with torch's activation modules between them (after the last, the output's, unless it is identity
    or softmax, which belongs to the loss). What ``MLP.to_torch`` returns."""
    layers = []
    for l, lin in enumerate(build_mlp(net, dtype=dtype), start=1):
        layers.append(lin)
        act = net.hidden_activation if l < net.L else net.output_activation
        if l < net.L or act not in ("identity", "softmax"):
            layers.append(_MODULE[act]())
    return nn.Sequential(*layers)


def _logits(net, layers, X):
    """Run the layers; return the output pre-activation z^(L)."""
    a = X
    for l, lin in enumerate(layers, start=1):
        z = lin(a)
        if l < len(layers):
            a = _ACT[net.hidden_activation](z)
    return z


def _loss_from_logits(net, z, Y):
    """The batch-mean loss from torch's functional losses, with the 1/2 and the mean made explicit."""
    N = z.shape[0]
    if net.loss_name == "cross_entropy":
        return F.cross_entropy(z, Y, reduction="mean")  # labels (N,) or probability rows (N, K)
    if net.loss_name == "binary_cross_entropy":
        return F.binary_cross_entropy_with_logits(z, Y, reduction="sum") / N  # sum over outputs, mean over N
    a = _ACT[net.output_activation](z)
    return 0.5 * F.mse_loss(a, Y, reduction="sum") / N  # 1/2 ||y - a||^2, mean over N


def _as_torch_inputs(net, X, Y, tdt):
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float64)).to(tdt)
    Y = np.asarray(Y)
    if net.loss_name == "cross_entropy" and Y.ndim == 1:
        Yt = torch.as_tensor(Y.astype(np.int64))
    else:
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        Yt = torch.as_tensor(Y.astype(np.float64)).to(tdt)
    return Xt, Yt


def mlp_loss_and_grad(net, X, Y, input_grad=False, dtype=None):
    """Autograd's loss and gradients for ``net`` on (X, Y), as ``(float, {name: ndarray})``.

    ``dtype`` (default: the net's) chooses the precision torch computes in; float64 gives an oracle for a
    float32 model too.
    """
    tdt = _torch_dtype(net.dtype if dtype is None else dtype)
    layers = build_mlp(net, dtype=tdt)
    Xt, Yt = _as_torch_inputs(net, X, Y, tdt)
    Xt.requires_grad_(input_grad)
    loss = _loss_from_logits(net, _logits(net, layers, Xt), Yt)
    loss.backward()
    grads = {}
    for l, lin in enumerate(layers, start=1):
        grads[f"W{l}"] = lin.weight.grad.numpy().copy()
        grads[f"b{l}"] = lin.bias.grad.numpy().copy()
    if input_grad:
        grads["X"] = Xt.grad.numpy().copy()
    return float(loss.item()), grads


def mlp_jvp(net, X, Y, tangents, dtype=None):
    """``torch.func.jvp`` of the loss along ``tangents`` (keyed like params), through the nn.Linear layers."""
    from torch.func import functional_call, jvp

    tdt = _torch_dtype(net.dtype if dtype is None else dtype)
    layers = build_mlp(net, dtype=tdt)
    Xt, Yt = _as_torch_inputs(net, X, Y, tdt)
    names = {}
    for l in range(1, len(net.sizes)):
        names[f"{l - 1}.weight"] = f"W{l}"
        names[f"{l - 1}.bias"] = f"b{l}"
    primals = {tn: p.detach() for tn, p in layers.named_parameters()}
    tans = {
        tn: torch.as_tensor(np.asarray(tangents[ours], dtype=np.float64)).to(tdt)
        for tn, ours in names.items()
    }

    def f(p):
        a = Xt
        n = len(layers)
        for l in range(n):
            z = functional_call(layers[l], {"weight": p[f"{l}.weight"], "bias": p[f"{l}.bias"]}, (a,))
            if l < n - 1:
                a = _ACT[net.hidden_activation](z)
        return _loss_from_logits(net, z, Yt)

    value, dvalue = jvp(f, (primals,), (tans,))
    return float(value.item()), float(dvalue.item())
