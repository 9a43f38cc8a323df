"""torch oracle for the recurrent second-order products of ``manual_bp.recurrent_second_order``.

Everything here differentiates torch's own ``nn.RNN/LSTM/GRU`` and ``nn.Linear`` (``build_recurrent``, our
weights copied in) and torch's functional losses (``_step_losses``: per-step cross-entropy or squared
error, masked, summed over time, averaged over the N sequences) with autograd; nothing re-types our
R-operator lines.

- ``recurrent_hvp``: reverse-over-reverse (double backward): g = dE/d(theta, s_0) with ``create_graph=True``,
  then H v = d(g . v)/d(theta, s_0). Without ``v["h0"]`` the initial-state tangent is 0 and only the parameter
  block is returned; with it, the product in the joint (theta, s_0) space, both blocks, as ours.
- ``recurrent_gvp``: J^T H_L J v with q_t = V h_t + c the logits of every step: J v by the double-backward
  trick (J v = d/du [(J^T u) . v] for any u, J^T u being linear in u), H_L (J v) by double backward of
  torch's loss in q (a leaf), and J^T by one more backward of q with H_L J v as its upstream gradient. With
  ``structural_damping=mu`` it adds mu J_h^T J_h v / N, J_h the Jacobian of torch's output states h_1..h_T
  (the module's ``output``), by the same trick.

Why plain autograd rather than ``torch.func`` (``jvp(grad(E))`` through ``functional_call``, which gives the
same products): ``torch.func.grad`` imports some 800 modules on its first call (about 1.7 s), which the test
budget cannot afford; torch's CPU RNN kernels are composites of differentiable ops, so double backward works.
"""

from __future__ import annotations

import torch

from .mlp import _torch_dtype
from .recurrent import _call, _inputs, _kind, _mask, _state0, _step_losses, _t, _targets, build_recurrent


def _setup(model, X, Y, h0, mask, dtype):
    kind = _kind(model)
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    core, head = build_recurrent(model, dtype=tdt)
    x, Yt = _inputs(model, X, tdt), _targets(model, Y, tdt)
    T, N = x.shape[:2]
    mask_t = _mask(mask, T, N, tdt)
    state0 = _state0(model, h0, N, tdt)  # leaves (1, N, H): torch's layout of a one-layer state
    names = list(model.params)
    params = [head.get_parameter(theirs[5:]) if theirs.startswith("head.") else core.get_parameter(theirs)
              for theirs in (model.param_names()[k] for k in names)]
    state_names = [f"{part}0" for part in model.STATES]
    return kind, tdt, core, head, x, Yt, N, mask_t, state0, names, params, state_names


def _direction(v, names, state_names, state0, tdt):
    """v's tensors for the parameters, then for the initial state (zeros where absent), and whether v had
    an initial-state tangent."""
    vs = [_t(v[k], tdt) for k in names]
    with_state = any(k in v for k in state_names)
    vs += [_t(v[k], tdt).reshape(s.shape) if k in v else torch.zeros_like(s)
           for k, s in zip(state_names, state0)]
    return vs, with_state


def _numpy(tensors, wrt, names):
    """Our names and layouts: the initial-state entries (1, N, H) as (N, H)."""
    out = {}
    for k, t, w in zip(names, tensors, wrt):
        a = (torch.zeros_like(w) if t is None else t).detach().numpy().copy()
        out[k] = a[0] if k.endswith("0") else a
    return out


def recurrent_hvp(model, X, Y, v, h0=None, mask=None, dtype=None):
    """``(E, grads, Hv)`` by double backward through torch's modules; ``v`` keyed like params (+ ``"h0"``,
    ``"c0"``). ``grads`` holds the parameter and initial-state gradients; ``Hv`` the parameter block, plus the
    initial-state block when v carries an initial-state tangent."""
    kind, tdt, core, head, x, Yt, N, mask_t, state0, names, params, state_names = _setup(
        model, X, Y, h0, mask, dtype)
    vs, with_state = _direction(v, names, state_names, state0, tdt)
    out, _ = _call(kind, core, x, state0)
    E = _step_losses(model, head, out, Yt, mask_t).sum() / N
    wrt = params + state0
    g = torch.autograd.grad(E, wrt, create_graph=True, allow_unused=True)
    gv = sum((gi * vi).sum() for gi, vi in zip(g, vs) if gi is not None)
    keys = names + (state_names if with_state else [])
    Hv = torch.autograd.grad(gv, wrt[: len(keys)], allow_unused=True)
    return float(E.item()), _numpy(g, wrt, names + state_names), _numpy(Hv, wrt, keys)


def recurrent_gvp(model, X, Y, v, h0=None, mask=None, structural_damping=0.0, dtype=None):
    """``(G + mu S) v`` (module docstring) keyed like params, plus the initial-state block when v carries an
    initial-state tangent."""
    kind, tdt, core, head, x, Yt, N, mask_t, state0, names, params, state_names = _setup(
        model, X, Y, h0, mask, dtype)
    vs, with_state = _direction(v, names, state_names, state0, tdt)
    wrt = params + state0
    hs, _ = _call(kind, core, x, state0)  # (T, N, H): h_1..h_T
    q = head(hs)
    # J v = d/du [(J^T u) . v]: u stacks the upstream gradients of q and of the hidden states
    uq = torch.zeros_like(q, requires_grad=True)
    uh = torch.zeros_like(hs, requires_grad=True)
    JTu = torch.autograd.grad((q, hs), wrt, grad_outputs=(uq, uh), create_graph=True, allow_unused=True)
    Jv_q, Jv_h = torch.autograd.grad(sum((a * b).sum() for a, b in zip(JTu, vs) if a is not None), (uq, uh))
    # H_L J v: double backward of torch's loss as a function of the logits (a leaf)
    q_leaf = q.detach().requires_grad_(True)
    E_q = _step_losses(model, lambda t: t, q_leaf, Yt, mask_t).sum() / N
    (dl,) = torch.autograd.grad(E_q, q_leaf, create_graph=True)
    (HJv,) = torch.autograd.grad((dl * Jv_q).sum(), q_leaf)
    keys = names + (state_names if with_state else [])
    up_h = Jv_h * (float(structural_damping) / N)  # mu J_h v / N
    Gv = torch.autograd.grad((q, hs), wrt[: len(keys)], grad_outputs=(HJv, up_h), allow_unused=True)
    return _numpy(Gv, wrt, keys)


__all__ = ["recurrent_hvp", "recurrent_gvp"]
