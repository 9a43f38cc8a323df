"""Second order through time: exact Hessian-vector products (R-operator) and Gauss-Newton products for the
RNN (tanh, relu), LSTM and GRU, with optional structural damping (Martens & Sutskever 2011).

Notation of ``recurrent.py`` (S1, S2, O1-O5, B1-B4) and of the cells (R1-R4, L1-L8, G1-G9). The parameters
are theta = (U, W, b, [bh], V, c); a direction v is keyed like them, ``v = (U', W', b', [bh'], V', c')``,
optionally with the initial state's ``v["h0"] = s_0'`` (and ``v["c0"]``), as ``jvp``'s tangents. Pearlmutter's
R-operator

    R{x} = d/dr x(theta + r v, s_0 + r s_0')|_{r=0}

is a derivative, so it obeys the product rule and commutes with the chain rule; applied to every line of the
forward pass and of BPTT it turns the gradient into R{dE/dtheta} = H v, the exact Hessian-vector product.
With ``v["h0"]`` the product is taken in the joint space (theta, s_0): R{dE/dtheta} = H_tt v + H_ts s_0' and
R{dE/ds_0} = H_st v + H_ss s_0', and both blocks are returned (``Hv["h0"]``, ``Hv["c0"]``); without it
s_0' = 0 and only the parameter block is returned. R{x} of anything that does not depend on theta (x_t, y_t,
the mask) is 0. Below, each line is the R of the line whose tag it extends; ' marks v's entries, ⊙ is the
element-wise product, rows are the N sequences, time is the only loop.

Forward (R of S1, S2), hoisted out of the loop as jvp's J1:

    (RS1)  R{G_t} = U' x_t + b'                         (token ids: U'[:, x_t] + b')
    (RS2)  R{W h_{t-1} [+ bh]} = W' h_{t-1} [+ bh'] + W R{h_{t-1}},    R{s_0} = v["h0"] (and v["c0"]) or 0

The RNN (R1, R2; f = tanh or relu, f' from z_t and s_t; f'' = -2 s_t f'(z_t) for tanh, 0 for relu off its
kink, where torch's double backward also gives 0):

    (RR1)  R{z_t} = R{G_t} + W' s_{t-1} + W R{s_{t-1}}
    (RR2)  R{s_t} = f'(z_t) ⊙ R{z_t}

The LSTM (L1-L4; sigma' = sigma (1 - sigma), tanh' = 1 - tanh^2, and R{sigma(a)(1 - sigma(a))} =
(1 - 2 sigma) R{sigma}):

    (RL1)  R{a_t} = R{G_t} + W' h_{t-1} + W R{h_{t-1}}
    (RL2)  R{i} = i(1-i) ⊙ R{a_i},  R{f} = f(1-f) ⊙ R{a_f},  R{g} = (1-g^2) ⊙ R{a_g},  R{o} = o(1-o) ⊙ R{a_o}
    (RL3)  R{c_t} = R{f} ⊙ c_{t-1} + f ⊙ R{c_{t-1}} + R{i} ⊙ g + i ⊙ R{g}
    (RL4)  R{h_t} = R{o} ⊙ tanh(c_t) + o ⊙ (1 - tanh^2 c_t) ⊙ R{c_t}

The GRU (G1-G4; gh = W h_{t-1} + bh):

    (RG1)  R{gh_t} = W' h_{t-1} + bh' + W R{h_{t-1}}
    (RG2)  R{r} = r(1-r) ⊙ (R{G_r} + R{gh_r}),    R{z} = z(1-z) ⊙ (R{G_z} + R{gh_z})
    (RG3)  R{n} = (1-n^2) ⊙ (R{G_n} + R{r} ⊙ gh_n + r ⊙ R{gh_n})
    (RG4)  R{h_t} = R{n} + R{z} ⊙ (h_{t-1} - n) + z ⊙ (R{h_{t-1}} - R{n})

The output layer and the losses (O1-O5), p_t = softmax(q_t), m_t the mask:

    (RO1)  R{q_t} = V' h_t + V R{h_t} + c'
    (RO2)  R{dq_t} = m_t (p_t ⊙ R{q_t} - p_t (p_t . R{q_t})) / N        cross-entropy (the softmax's Jacobian)
           R{dq_t} = m_t R{q_t} / N                                      squared error (identity output)
    (RO3)  (H v)_V = R{dE/dV} = sum_t R{dq_t}^T h_t + dq_t^T R{h_t},     (H v)_c = sum_t R{dq_t}

BPTT (R of B1-B4). R{dE/dh_t} is carried backwards exactly as dE/dh_t is:

    (RT1)  R{dE/dh_t} = R{dq_t} V + dq_t V' + R{dE/dh_t |_{via step t+1}}
    (RT2)  R{dG_t}, R{dGh_t}, R{dE/ds_{t-1} |_{via step t}} from the cells' lines below
    (RT3)  (H v)_U = sum_t R{dG_t}^T x_t,   (H v)_b = sum_t R{dG_t},
           (H v)_W = sum_t R{dGh_t}^T h_{t-1} + dGh_t^T R{h_{t-1}},   (H v)_bh = sum_t R{dGh_t}
    (RT4)  (H v)_{s_0} = R{dE/ds_0} = what (RT2) returns at t = 1                  (only with v["h0"])

The RNN (R3, R4; ds_t = dE/ds_t, delta_t = dG_t = dGh_t):

    (RR3)  R{delta_t} = R{ds_t} ⊙ f'(z_t) + ds_t ⊙ f''(z_t) ⊙ R{z_t}
    (RR4)  R{dE/ds_{t-1} |_{via step t}} = R{delta_t} W + delta_t W'

The LSTM (L5-L8; dh = dE/dh_t, dc_next = dE/dc_{t+1} ⊙ f_{t+1}, tc = tanh(c_t), R{tc} = (1 - tc^2) R{c_t}):

    (RL5)  R{dc} = R{dc_next} + R{dh} ⊙ o ⊙ (1 - tc^2) + dh ⊙ R{o} ⊙ (1 - tc^2) - 2 dh ⊙ o ⊙ tc ⊙ R{tc}
    (RL6)  R{da_i} = R{dc} ⊙ g ⊙ i(1-i) + dc ⊙ R{g} ⊙ i(1-i) + dc ⊙ g ⊙ (1-2i) ⊙ R{i}
           R{da_f} = R{dc} ⊙ c_{t-1} ⊙ f(1-f) + dc ⊙ R{c_{t-1}} ⊙ f(1-f) + dc ⊙ c_{t-1} ⊙ (1-2f) ⊙ R{f}
           R{da_g} = R{dc} ⊙ i ⊙ (1-g^2) + dc ⊙ R{i} ⊙ (1-g^2) - 2 dc ⊙ i ⊙ g ⊙ R{g}
           R{da_o} = R{dh} ⊙ tc ⊙ o(1-o) + dh ⊙ R{tc} ⊙ o(1-o) + dh ⊙ tc ⊙ (1-2o) ⊙ R{o}
    (RL7)  R{dE/dh_{t-1} |_{via step t}} = R{dG_t} W + dG_t W'
    (RL8)  R{dE/dc_{t-1} |_{via c_t}} = R{dc} ⊙ f + dc ⊙ R{f}

The GRU (G5-G9; dh = dE/dh_t):

    (RG5)  R{da_n} = R{dh} ⊙ (1-z) ⊙ (1-n^2) - dh ⊙ R{z} ⊙ (1-n^2) - 2 dh ⊙ (1-z) ⊙ n ⊙ R{n}
    (RG6)  R{da_z} = R{dh} ⊙ (h_{t-1} - n) ⊙ z(1-z) + dh ⊙ (R{h_{t-1}} - R{n}) ⊙ z(1-z)
                     + dh ⊙ (h_{t-1} - n) ⊙ (1-2z) ⊙ R{z}
    (RG7)  R{da_r} = R{da_n} ⊙ gh_n ⊙ r(1-r) + da_n ⊙ R{gh_n} ⊙ r(1-r) + da_n ⊙ gh_n ⊙ (1-2r) ⊙ R{r}
    (RG8)  R{dG_t} = [R{da_r}; R{da_z}; R{da_n}],   R{dGh_t} = [R{da_r}; R{da_z}; R{r} ⊙ da_n + r ⊙ R{da_n}]
    (RG9)  R{dE/dh_{t-1} |_{via step t}} = R{dh} ⊙ z + dh ⊙ R{z} + R{dGh_t} W + dGh_t W'

What the time loop does. Every term of RR3-RG9 that holds no running R{dE/ds} (the products with the stored
forward values, dE/ds_t, dG_t and the forward R-values) is computed for all t at once before the loop, and so
are dG_t W' (one product over T*N rows); the loop itself adds R{dq_t} V + dq_t V' (RT1), scales the running
R{dE/ds_t} into R{dG_t}, and makes one product R{dGh_t} W per step, as BPTT makes dGh_t W. The forward R-pass
makes one product W R{h_{t-1}} per step. So ``hvp`` costs one ``loss_and_grad`` (whose E and gradient it
returns bit for bit: the same operations) plus one more forward and backward pass of about the same size:
about 2-3 gradients.

Truncation. A truncated gradient (``truncate=k < T-1``) is not the gradient of any function of theta (each
E_t's chain is cut at a different step), so it has no Hessian and no Gauss-Newton matrix: ``truncate`` is
accepted for a uniform call signature and refused with ValueError unless it is None or >= T-1 (full BPTT).

Gauss-Newton. With q = (q_1..q_T) the output pre-activations of every step and sequence, J = dq/dtheta and
H_L the Hessian of the loss E in q (which for these matching losses is block-diagonal per step and sequence):

    (GR1)  J v = R{q_t} for all t: (RS1-RS2), each cell's forward R-lines, (RO1)
    (GR2)  H_L J v = R{dq_t} of (RO2): m_t (diag(p_t) - p_t p_t^T) R{q_t} / N (cross-entropy),
           m_t R{q_t} / N (squared error); masked steps contribute nothing, 1/N as the loss
    (GR3)  G v = J^T (H_L J v): plain BPTT (O5, B1-B4) with dE/dq_t replaced by u_t = H_L J v;
           (G v)_V = sum_t u_t^T h_t, (G v)_c = sum_t u_t, the rest from dE/dh_t|_out = u_t V

G = J^T H_L J is symmetric positive semi-definite (H_L is: softmax's diag(p) - p p^T and I), so
v.Gv = (Jv)^T H_L (Jv) >= 0 whatever the curvature of the cells. It drops from H the terms in dq_t times the
second derivatives of q_t in theta (all of the cells' curvature). With ``v["h0"]`` J includes dq/ds_0 and
Gv carries the s_0 block, as ``hvp``.

Structural damping (Martens & Sutskever 2011, section 3.3): ``structural_damping=mu`` adds mu S v with

    (SD1)  S = J_h^T D_h J_h,   D_h = I / N,   J_h = dh/dtheta over every step t = 1..T and sequence,

the Gauss-Newton matrix of the squared distance (1/2N) sum_{t,n} ||h_tn(theta + p) - h_tn(theta)||^2 between
the hidden states before and after a step p: it penalises steps that move the hidden states much. Since
J_h v = R{h_t} is already there from (GR1), it costs no extra pass: the seed of BPTT gains a term,

    (SD2)  (G + mu S) v = J^T-backprop of dE/dh_t|_out = u_t V + mu R{h_t} / N        (GR3 with this seed)

Which D, and why. This is the squared distance on the hidden states themselves, D_h = I (the brief's
J_s^T J_s), for every cell alike: h_t is the state that the RNN and GRU carry and that all three feed to the
output layer, the LSTM's h_t = o ⊙ tanh(c_t) has no single output non-linearity whose matching loss would
serve, and I is positive definite. All T steps count, unmasked, since the mask says which outputs are scored,
not which states exist (with the adding problem's mask, which keeps only the last step, a masked D would
see h_T alone and miss the long-range state changes the damping is for). Martens & Sutskever used the
matching loss of the tanh units, which in the pre-activations z_t is D_z = diag(1 - s_t^2); in our form
J_h = diag(1 - s_t^2) J_z, so ours is D_z = diag((1 - s_t^2)^2): it weights a saturated unit's pre-activation
change by (1 - s^2)^2 rather than (1 - s^2), i.e. less.

Public functions (the lead wires them as ``model.hvp``, ``model.gvp``, ``model.gvp_operator``):
``hvp(model, X, Y, v, h0=None, mask=None, truncate=None) -> (E, grads, Hv)``,
``gvp(model, X, Y, v, h0=None, mask=None, truncate=None, structural_damping=0.0) -> (E, grads, Gv)``,
``gvp_operator(model, X, Y, h0=None, mask=None, truncate=None) -> (E, grads, product)`` with
``product(v, structural_damping=0.0) -> Gv`` sharing one forward and backward pass between products.
"""

from __future__ import annotations

import numpy as np

from ._validation import as_float_array, check_param_dict
from .gru import GRU
from .lstm import LSTM
from .optim import _check_real
from .recurrent import Recurrent
from .rnn import RNN

__all__ = ["hvp", "gvp", "gvp_operator"]


# ---------------------------------------------------------------------------------------------- checks
def _check_model(model):
    if not isinstance(model, (RNN, LSTM, GRU)):
        what = "a Recurrent subclass without a known cell" if isinstance(model, Recurrent) else "not one"
        raise TypeError(f"model must be a manual_bp RNN, LSTM or GRU ({what}); got {type(model).__name__}")
    options = {
        "num_layers": (getattr(model, "num_layers", 1), 1),
        "bidirectional": (getattr(model, "bidirectional", False), False),
        "bias": (getattr(model, "bias", True), True),
        "proj_size": (getattr(model, "proj_size", 0), 0),
    }
    other = {k: got for k, (got, want) in options.items() if got != want}
    if other or model.output_size is None:
        what = ", ".join(f"{k}={v!r}" for k, v in other.items()) or "output_size=None"
        raise ValueError(
            f"hvp/gvp are derived for a one-layer, one-direction model with biases, no projection and an "
            f"output layer; got {what}"
        )


def _check_truncate(model, truncate, T):
    k = model._check_truncate(truncate)
    if k is not None and k < T - 1:
        raise ValueError(
            f"truncate={k} with T={T}: a truncated gradient (truncate < T-1) is not the derivative of any "
            f"loss, so it has no Hessian or Gauss-Newton matrix; use truncate=None (full BPTT)"
        )


def _check_direction(model, v, N):
    """``(V, V_state0, with_state)``: v's parameter entries in our dtype, the initial-state tangents (zeros
    where absent) and whether v carried any of them."""
    names = tuple(f"{part}0" for part in model.STATES)
    V = check_param_dict("v", v, model.params, model.dtype, optional=names)
    H = model.hidden_size
    Vs0 = tuple(
        as_float_array(f"v[{k!r}]", v[k], model.dtype, (("N", N), ("H", H))) if k in v
        else np.zeros((N, H), dtype=model.dtype)
        for k in names
    )
    return V, Vs0, any(k in v for k in names)


def _check_inputs(model, X, Y, h0, mask, truncate):
    _check_model(model)
    X, is_ids, Y, state0, mask = model._check_all(X, Y, h0, mask)
    _check_truncate(model, truncate, X.shape[0])
    return X, is_ids, Y, state0, mask


# ------------------------------------------------------------------------------------- the gradient pass
def _gradient_pass(model, X, is_ids, Y, state0, mask) -> dict:
    """``loss_and_grad``'s full-BPTT computation, operation for operation (so E and grads are bit for bit
    the same), keeping what the R-passes read: the cache, dq, the outputs, dE/d(state) entering each step
    (``"dstate"``: one (T, N, H) array per state part) and the gate deltas dG."""
    cache = model._forward(X, is_ids, state0)
    h = cache["h"]
    T, N, H, K = X.shape[0], X.shape[1], model.hidden_size, model.output_size
    E, dq, o = model._loss_and_delta(model._logits(cache), Y, mask)
    dq2 = dq.reshape(T * N, K)
    grads = {"V": dq2.T @ h[1:].reshape(T * N, H), "c": dq2.sum(axis=0)}  # (O5)
    dh_out = np.matmul(dq2, model.params["V"]).reshape(T, N, H)  # (B1) E_t through V
    dG, dstate0, kept = _backprop(model, cache, dh_out, keep=True)
    grads.update(model._weight_grads(cache, dG))  # (B3)
    grads = {k: grads[k] for k in model.params}
    for part, d in zip(model.STATES, dstate0):
        grads[f"{part}0"] = d  # (B4)
    return {"E": E, "grads": grads, "cache": cache, "dq": dq, "o": o, "dG": dG, "dstate": kept,
            "mask": mask, "N": N}


def _backprop(model, cache, dh_out, keep=False):
    """(B1, B2) full BPTT from the seed ``dh_out (T, N, H)`` = dE/dh_t through the outputs: ``(dG, dE/ds_0,
    kept)``, ``kept`` the dE/d(state) entering each step (one (T, N, H) array per part) when ``keep``."""
    T, N, H = dh_out.shape
    dG = np.empty((T, N, model.GATES * H), dtype=model.dtype)
    dstate = tuple(np.zeros((N, H), dtype=model.dtype) for _ in model.STATES)
    kept = tuple(np.empty((T, N, H), dtype=model.dtype) for _ in model.STATES) if keep else None
    for s in range(T - 1, -1, -1):
        np.add(dstate[0], dh_out[s], out=dstate[0])  # (B1)
        if keep:
            for k, d in zip(kept, dstate):
                k[s] = d
        dstate = model._step_back(s, s + 1, dstate, cache, dG[s])  # (B2)
    return dG, dstate, kept


# ------------------------------------------------------------------------------------- the R-forward pass
def _r_forward(model, cache, V, Vs0) -> dict:
    """R{h_t} (T+1, N, H) and what the R-backward pass reads, per cell (RS1-RS2, RR1-2 / RL1-4 / RG1-4)."""
    X, is_ids, h = cache["X"], cache["is_ids"], cache["h"]
    T, N, H = h.shape[0] - 1, h.shape[1], h.shape[2]
    GH = model.GATES * H
    RGx = model._project(X, is_ids, V["U"], V["b"])  # (RS1) U' x_t + b', all t
    RGw = np.matmul(h[:-1].reshape(T * N, H), V["W"].T).reshape(T, N, GH)  # (RS2) W' h_{t-1}, all t
    if model.HIDDEN_BIAS:
        RGw += V["bh"]  # (RS2) + bh'
    Rh = np.empty((T + 1, N, H), dtype=model.dtype)
    Rh[0] = Vs0[0]  # R{s_0}
    W_T = cache["W_T"]
    gates = cache["gates"]
    R = {"h": Rh}
    if isinstance(model, LSTM):
        i, f, g, o = (gates[..., k * H : (k + 1) * H] for k in range(4))
        dact = np.empty_like(gates)  # i(1-i), f(1-f), 1-g^2, o(1-o) for all t
        np.multiply(gates, 1 - gates, out=dact)
        dact[..., 2 * H : 3 * H] = 1 - g * g
        c, tc = cache["c"], cache["tanh_c"]
        Rc = np.empty((T + 1, N, H), dtype=model.dtype)
        Rc[0] = Vs0[1]
        Ra = RGx
        Ra += RGw  # R{G_t} + W' h_{t-1}
        for s in range(T):
            Ra[s] += Rh[s] @ W_T  # (RL1)
            Ra[s] *= dact[s]  # (RL2) R{i}, R{f}, R{g}, R{o}
            Ri, Rf, Rg, Ro = (Ra[s, :, k * H : (k + 1) * H] for k in range(4))
            Rc[s + 1] = Rf * c[s] + f[s] * Rc[s] + Ri * g[s] + i[s] * Rg  # (RL3)
            Rh[s + 1] = Ro * tc[s] + o[s] * (1 - tc[s] * tc[s]) * Rc[s + 1]  # (RL4)
        R.update(gates=Ra, c=Rc, dact=dact)
    elif isinstance(model, GRU):
        r, z, n = (gates[..., k * H : (k + 1) * H] for k in range(3))
        gh_n = cache["gh_n"]
        dact = np.empty_like(gates)  # r(1-r), z(1-z), 1-n^2 for all t
        np.multiply(gates, 1 - gates, out=dact)
        dact[..., 2 * H :] = 1 - n * n
        Rgates = np.empty_like(gates)
        Rgh_n = np.empty((T, N, H), dtype=model.dtype)
        for s in range(T):
            Rgh = RGw[s] + Rh[s] @ W_T  # (RG1) W' h_{t-1} + bh' + W R{h_{t-1}}
            np.add(RGx[s, :, : 2 * H], Rgh[:, : 2 * H], out=Rgates[s, :, : 2 * H])
            Rgates[s, :, : 2 * H] *= dact[s, :, : 2 * H]  # (RG2) R{r}, R{z}
            Rr, Rz = Rgates[s, :, :H], Rgates[s, :, H : 2 * H]
            Rgh_n[s] = Rgh[:, 2 * H :]
            Rn = Rgates[s, :, 2 * H :]
            Rn_in = RGx[s, :, 2 * H :] + Rr * gh_n[s] + r[s] * Rgh_n[s]
            np.multiply(dact[s, :, 2 * H :], Rn_in, out=Rn)  # (RG3)
            Rh[s + 1] = Rn + Rz * (h[s] - n[s]) + z[s] * (Rh[s] - Rn)  # (RG4)
        R.update(gates=Rgates, gh_n=Rgh_n, dact=dact)
    else:
        fp = model._fprime(gates, h[1:])  # f'(z_t) for all t (relu: booleans)
        Rz = RGx
        Rz += RGw  # R{G_t} + W' s_{t-1}
        for s in range(T):
            Rz[s] += Rh[s] @ W_T  # (RR1)
            np.multiply(fp[s], Rz[s], out=Rh[s + 1])  # (RR2)
        R.update(gates=Rz, fprime=fp)
    return R


def _r_output(model, gp, Rh, V) -> tuple:
    """(RO1) R{q_t} and (RO2) R{dq_t} = H_L R{q_t}, both ``(T, N, K)``."""
    cache, mask, N = gp["cache"], gp["mask"], gp["N"]
    h = cache["h"]
    T, H = h.shape[0] - 1, h.shape[2]
    Rq = np.matmul(Rh[1:].reshape(T * N, H), model.params["V"].T)  # (RO1) V R{h_t}
    Rq += np.matmul(h[1:].reshape(T * N, H), V["V"].T)  # (RO1) + V' h_t
    Rq += V["c"]  # (RO1) + c'
    Rq = Rq.reshape(T, N, -1)
    if model.loss_name == "cross_entropy":
        p = gp["o"]
        Rdq = p * Rq
        Rdq -= p * Rdq.sum(axis=-1, keepdims=True)  # (RO2) p ⊙ R{q} - p (p . R{q})
    else:
        Rdq = Rq.copy()  # (RO2) identity output
    if mask is not None:
        Rdq *= mask[..., None]  # (RO2) m_t
    Rdq /= N  # (RO2) / N
    return Rq, Rdq


# ------------------------------------------------------------------------------------- the R-backward pass
def _r_backward(model, gp, R, V, Rdh_out) -> tuple:
    """(RT1-RT2) with the cell's R-lines: ``(R{dG}, R{dGh}, R{dE/ds_0} per part)``."""
    cache, dG = gp["cache"], gp["dG"]
    h, gates = cache["h"], cache["gates"]
    T, N, H = Rdh_out.shape
    W = model.params["W"]
    dGh = model._hidden_deltas(dG, cache)
    hoist = np.matmul(dGh.reshape(T * N, -1), V["W"]).reshape(T, N, H)  # dGh_t W', all t (RR4, RL7, RG9)
    RdG = np.empty_like(dG)
    if isinstance(model, LSTM):
        dh, dcn = gp["dstate"]
        Rgates, Rc, dact = R["gates"], R["c"], R["dact"]
        i, f, g, o = (gates[..., k * H : (k + 1) * H] for k in range(4))
        Ri, Rf, Rg, Ro = (Rgates[..., k * H : (k + 1) * H] for k in range(4))
        di, df, dg, do = (dact[..., k * H : (k + 1) * H] for k in range(4))
        tc, c = cache["tanh_c"], cache["c"]
        c_prev, Rc_prev = c[:-1], Rc[:-1]
        dtc = 1 - tc * tc
        Rtc = dtc * Rc[1:]  # R{tanh c_t}
        o_dtc = o * dtc  # multiplies R{dh} in (RL5)
        dc = dcn + dh * o_dtc  # (L5), all t
        K5 = dh * (Ro * dtc - 2 * o * tc * Rtc)  # (RL5) terms free of the running R{dh}, R{dc_next}
        # (RL6): R{dG} = R{dc} ⊙ A (i, f, g blocks) or R{dh} ⊙ A (o block), plus K6 (all t)
        A = np.empty_like(dG)
        A[..., :H] = g * di
        A[..., H : 2 * H] = c_prev * df
        A[..., 2 * H : 3 * H] = i * dg
        A[..., 3 * H :] = tc * do
        K6 = np.empty_like(dG)
        K6[..., :H] = dc * (Rg * di + g * (1 - 2 * i) * Ri)
        K6[..., H : 2 * H] = dc * (Rc_prev * df + c_prev * (1 - 2 * f) * Rf)
        K6[..., 2 * H : 3 * H] = dc * (Ri * dg - 2 * i * g * Rg)
        K6[..., 3 * H :] = dh * (Rtc * do + tc * (1 - 2 * o) * Ro)
        K8 = dc * Rf  # (RL8) dc ⊙ R{f}
        Rdh = np.zeros((N, H), dtype=model.dtype)
        Rdcn = np.zeros((N, H), dtype=model.dtype)
        for s in range(T - 1, -1, -1):
            Rdh += Rdh_out[s]  # (RT1)
            Rdc = Rdcn + Rdh * o_dtc[s] + K5[s]  # (RL5)
            rg = RdG[s]
            for k in range(3):  # i, f, g blocks: R{dc} ⊙ A
                np.multiply(A[s, :, k * H : (k + 1) * H], Rdc, out=rg[:, k * H : (k + 1) * H])
            np.multiply(A[s, :, 3 * H :], Rdh, out=rg[:, 3 * H :])  # o block: R{dh} ⊙ A
            rg += K6[s]  # (RL6)
            Rdh = rg @ W + hoist[s]  # (RL7)
            Rdcn = Rdc * f[s] + K8[s]  # (RL8)
        return RdG, RdG, (Rdh, Rdcn)
    if isinstance(model, GRU):
        (dh,) = gp["dstate"]
        Rgates, Rgh_n, dact = R["gates"], R["gh_n"], R["dact"]
        Rh = R["h"]
        r, z, n = (gates[..., k * H : (k + 1) * H] for k in range(3))
        Rr, Rz, Rn = (Rgates[..., k * H : (k + 1) * H] for k in range(3))
        dr, dz, dn = (dact[..., k * H : (k + 1) * H] for k in range(3))
        gh_n, h_prev, Rh_prev = cache["gh_n"], h[:-1], Rh[:-1]
        hn = h_prev - n
        A_n = (1 - z) * dn  # multiplies R{dh} in (RG5)
        da_n = dh * A_n  # (G5), all t
        K_n = -dh * (Rz * dn + 2 * (1 - z) * n * Rn)  # (RG5) terms free of R{dh}
        A_z = hn * dz  # multiplies R{dh} in (RG6)
        K_z = dh * ((Rh_prev - Rn) * dz + hn * (1 - 2 * z) * Rz)  # (RG6)
        A_r = gh_n * dr  # multiplies R{da_n} in (RG7)
        K_r = da_n * (Rgh_n * dr + gh_n * (1 - 2 * r) * Rr)  # (RG7)
        K_h = Rr * da_n  # (RG8) R{r} ⊙ da_n
        hoist += dh * Rz  # (RG9) dh ⊙ R{z} + dGh_t W'
        RdGh = np.empty_like(dG)
        Rdh = np.zeros((N, H), dtype=model.dtype)
        for s in range(T - 1, -1, -1):
            Rdh += Rdh_out[s]  # (RT1)
            rg, rgh = RdG[s], RdGh[s]
            Rda_n = rg[:, 2 * H :]
            np.multiply(Rdh, A_n[s], out=Rda_n)
            Rda_n += K_n[s]  # (RG5)
            np.multiply(Rdh, A_z[s], out=rg[:, H : 2 * H])
            rg[:, H : 2 * H] += K_z[s]  # (RG6)
            np.multiply(Rda_n, A_r[s], out=rg[:, :H])
            rg[:, :H] += K_r[s]  # (RG7)
            rgh[:, : 2 * H] = rg[:, : 2 * H]  # (RG8)
            np.multiply(r[s], Rda_n, out=rgh[:, 2 * H :])
            rgh[:, 2 * H :] += K_h[s]  # (RG8) R{r} ⊙ da_n + r ⊙ R{da_n}
            Rdh = Rdh * z[s] + rgh @ W + hoist[s]  # (RG9)
        return RdG, RdGh, (Rdh,)
    (ds,) = gp["dstate"]
    fp, Rz = R["fprime"], R["gates"]
    if model.nonlinearity == "tanh":
        K3 = ds * (-2 * h[1:] * fp) * Rz  # (RR3) ds ⊙ f''(z) ⊙ R{z}, f'' = -2 s f'
    else:
        K3 = None  # relu: f'' = 0 off the kink
    Rds = np.zeros((N, H), dtype=model.dtype)
    for s in range(T - 1, -1, -1):
        Rds += Rdh_out[s]  # (RT1)
        np.multiply(Rds, fp[s], out=RdG[s])  # (RR3) R{ds} ⊙ f'(z)
        if K3 is not None:
            RdG[s] += K3[s]  # (RR3)
        Rds = RdG[s] @ W + hoist[s]  # (RR4)
    return RdG, RdG, (Rds,)


def _r_weight_grads(model, gp, R, RdG, RdGh) -> dict:
    """(RT3) R{dU}, R{db}, R{dW}, R{dbh} as single products over all T*N rows."""
    cache = gp["cache"]
    X, h = cache["X"], cache["h"]
    T, N, GH = RdG.shape
    H = model.hidden_size
    RdG2 = RdG.reshape(T * N, GH)
    out = {}
    if cache["is_ids"]:
        RdUT = np.zeros((model.input_size, GH), dtype=model.dtype)
        np.add.at(RdUT, X.reshape(-1), RdG2)  # (RT3) R{dU}[:, x] += R{dG_t}
        out["U"] = RdUT.T.copy()
    else:
        out["U"] = (X.reshape(T * N, -1).T @ RdG2).T  # (RT3) sum_t R{dG_t}^T x_t
    out["b"] = RdG2.sum(axis=0)  # (RT3)
    RdGh2 = RdGh.reshape(T * N, GH)
    dGh2 = model._hidden_deltas(gp["dG"], cache).reshape(T * N, GH)
    RW = h[:-1].reshape(T * N, H).T @ RdGh2  # (RT3) sum_t R{dGh_t}^T h_{t-1}
    RW += R["h"][:-1].reshape(T * N, H).T @ dGh2  # (RT3) + dGh_t^T R{h_{t-1}}
    out["W"] = RW.T
    if model.HIDDEN_BIAS:
        out["bh"] = RdGh2.sum(axis=0)  # (RT3)
    return out


# ------------------------------------------------------------------------------------- public functions
def hvp(model, X, Y, v, h0=None, mask=None, truncate=None):
    """Exact Hessian-vector product of the recurrent loss by the R-operator (module docstring).

    Parameters
    ----------
    model : RNN, LSTM or GRU (single layer)
    X, Y, h0, mask : as ``model.loss_and_grad``
    v : dict keyed like ``model.params`` (the direction), optionally with ``"h0"`` (and ``"c0"``) ``(N, H)``
        tangents of the initial state; then the product is taken in the joint (params, initial state) space
    truncate : None, or an int >= T-1 (full BPTT); a smaller one raises ValueError (no Hessian exists)

    Returns
    -------
    ``(E, grads, Hv)``: E and grads exactly as ``loss_and_grad(X, Y, h0=h0, mask=mask)`` returns them, and
    ``Hv = R{dE/dtheta}`` keyed like ``params`` (plus ``"h0"``/``"c0"`` when v carried an initial-state
    tangent), in the model's dtype. Cost: about 2-3 ``loss_and_grad``.
    """
    X, is_ids, Y, state0, mask = _check_inputs(model, X, Y, h0, mask, truncate)
    T, N, H, K = X.shape[0], X.shape[1], model.hidden_size, model.output_size
    V, Vs0, with_state = _check_direction(model, v, N)
    gp = _gradient_pass(model, X, is_ids, Y, state0, mask)
    R = _r_forward(model, gp["cache"], V, Vs0)
    Rh, h = R["h"], gp["cache"]["h"]
    _, Rdq = _r_output(model, gp, Rh, V)
    Rdq2, dq2 = Rdq.reshape(T * N, K), gp["dq"].reshape(T * N, K)
    Hv = {
        "V": Rdq2.T @ h[1:].reshape(T * N, H) + dq2.T @ Rh[1:].reshape(T * N, H),  # (RO3)
        "c": Rdq2.sum(axis=0),  # (RO3)
    }
    Rdh_out = Rdq2 @ model.params["V"]  # (RT1) R{dq_t} V
    Rdh_out += dq2 @ V["V"]  # (RT1) + dq_t V'
    RdG, RdGh, Rds0 = _r_backward(model, gp, R, V, Rdh_out.reshape(T, N, H))  # (RT2)
    Hv.update(_r_weight_grads(model, gp, R, RdG, RdGh))  # (RT3)
    Hv = {k: Hv[k] for k in model.params}
    if with_state:
        for part, d in zip(model.STATES, Rds0):
            Hv[f"{part}0"] = d  # (RT4)
    return gp["E"], gp["grads"], Hv


def _gn_product(model, gp, v, structural_damping, N):
    """(GR1-GR3, SD1-SD2) ``(G + mu S) v`` from a gradient pass ``gp``."""
    mu = _check_real("structural_damping", structural_damping, minimum=0.0)
    V, Vs0, with_state = _check_direction(model, v, N)
    cache = gp["cache"]
    h = cache["h"]
    T, H, K = h.shape[0] - 1, model.hidden_size, model.output_size
    R = _r_forward(model, cache, V, Vs0)  # (GR1)
    _, u = _r_output(model, gp, R["h"], V)  # (GR1) J v = R{q}; (GR2) u = H_L J v
    u2 = u.reshape(T * N, K)
    Gv = {"V": u2.T @ h[1:].reshape(T * N, H), "c": u2.sum(axis=0)}  # (GR3) as (O5)
    seed = np.matmul(u2, model.params["V"]).reshape(T, N, H)  # (GR3) as (B1)
    if mu > 0:
        seed += (mu / N) * R["h"][1:]  # (SD2) + mu R{h_t} / N
    dG, ds0, _ = _backprop(model, cache, seed)  # (GR3) as (B1-B2)
    Gv.update(model._weight_grads(cache, dG))  # (GR3) as (B3)
    Gv = {k: Gv[k] for k in model.params}
    if with_state:
        for part, d in zip(model.STATES, ds0):
            Gv[f"{part}0"] = d  # (GR3) as (B4)
    return Gv


def gvp(model, X, Y, v, h0=None, mask=None, truncate=None, structural_damping=0.0):
    """Gauss-Newton matrix-vector product ``G v = J^T H_L J v`` (GR1-GR3), J = dq/dtheta over all steps.

    ``structural_damping=mu >= 0`` returns ``(G + mu S) v`` with S = J_h^T J_h / N, the Gauss-Newton matrix
    of the squared distance between the hidden states h_1..h_T before and after the step (SD1-SD2; what
    ``HessianFree(..., structural_damping=...)`` asks for with mu = lambda * its mu). ``v`` may carry
    ``"h0"``/``"c0"`` as in :func:`hvp`. Returns ``(E, grads, Gv)``: E and grads exactly as
    ``loss_and_grad``, Gv keyed like ``params`` (plus the initial-state block when v has one); G is
    symmetric positive semi-definite. Cost: one ``loss_and_grad`` plus one forward and one backward pass.
    """
    X, is_ids, Y, state0, mask = _check_inputs(model, X, Y, h0, mask, truncate)
    _check_real("structural_damping", structural_damping, minimum=0.0)
    _check_direction(model, v, X.shape[1])
    gp = _gradient_pass(model, X, is_ids, Y, state0, mask)
    return gp["E"], gp["grads"], _gn_product(model, gp, v, structural_damping, X.shape[1])


def gvp_operator(model, X, Y, h0=None, mask=None, truncate=None):
    """``(E, grads, product)``: one forward and backward pass shared by many Gauss-Newton products (the inner
    loop of Hessian-free optimisation); ``product(v, structural_damping=0.0) -> (G + mu S) v`` as :func:`gvp`.

    ``product`` reads the parameter arrays and the forward pass of this call: it is valid until the
    parameters change (an in-place update of ``params`` makes it stale).
    """
    X, is_ids, Y, state0, mask = _check_inputs(model, X, Y, h0, mask, truncate)
    gp = _gradient_pass(model, X, is_ids, Y, state0, mask)
    N = X.shape[1]

    def product(v, structural_damping=0.0):
        return _gn_product(model, gp, v, structural_damping, N)

    return gp["E"], gp["grads"], product
