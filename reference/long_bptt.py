"""torch oracle for ``manual_bp.long_bptt``: the final state's Jacobian by ``torch.func.jacfwd``.

RTRL's final influence matrix is d(state_T)/d(U, W, b [, bh], s_0). Here torch's own ``nn.RNN/LSTM/GRU``
(built by ``build_recurrent`` with our weights) is run by ``functional_call`` and differentiated forward by
``torch.func.jacfwd`` with respect to the parameters that stand for ours (``model.param_names()``:
``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0`` and the GRU's ``bias_hh_l0``; RNN and LSTM hold
``bias_hh_l0`` at 0, as ``build_recurrent`` does) and the initial state. Nothing here re-types an RTRL
formula: the derivatives are torch's forward-mode autodiff.
"""

from __future__ import annotations

import torch
from torch.func import jacfwd

from .mlp import _torch_dtype
from .recurrent import _call, _inputs, _kind, _state0, build_recurrent


def final_state_jacobian(model, X, h0=None, dtype=None) -> dict:
    """``{part: {name: d part_T / d name}}`` for part in "h" [, "c"], from ``torch.func.jacfwd``.

    name: our parameter names U, W [, b] [, bh] with shape ``(N, H) + param.shape``, and "h0" [, "c0"] with
    shape ``(N, H, H)``: d part_T[n] / d s0_part[n] (sequences do not mix, so only this block is non-zero).
    One-layer, one-direction models; ``dtype`` (default: the model's) is the precision torch computes in.
    """
    kind = _kind(model)
    tdt = _torch_dtype(model.dtype if dtype is None else dtype)
    core, _ = build_recurrent(model, dtype=tdt)
    x = _inputs(model, X, tdt)
    N = x.shape[0] if model.batch_first else x.shape[1]
    state0 = tuple(s.detach() for s in _state0(model, h0, N, tdt))  # (1, N, H) each
    ours = {theirs: name for name, theirs in model.param_names().items() if not theirs.startswith("head.")}
    free = {n: p.detach() for n, p in core.named_parameters() if n in ours}
    fixed = {n: p.detach() for n, p in core.named_parameters() if n not in ours}

    def final_state(params, s0):
        _, state = _call(kind, core, x, list(s0), {**fixed, **params})
        return tuple(part[0] for part in state)  # (N, H) each

    jac = jacfwd(final_state, argnums=(0, 1))(free, state0)  # jac[i] = (d part_i / d params, d part_i / d s0)
    parts = model.STATES
    ar = torch.arange(N)
    out = {}
    for i, part in enumerate(parts):
        d_params, d_state0 = jac[i]
        d = {ours[n]: j.numpy().copy() for n, j in d_params.items()}
        for k, q in enumerate(parts):
            d[f"{q}0"] = d_state0[k][ar, :, 0, ar, :].numpy().copy()  # (N, H, H): sequence n's own block
        out[part] = d
    return out
