"""GRU, torch-compatible (``torch.nn.GRU``: gate order r, z, n; the reset gate multiplies W_n h + bh_n).

The cell on the skeleton of ``recurrent.py`` (output layer, loss, mask, truncation, JVP plumbing live there).
With ``G_t = U x_t + b`` hoisted out of the loop (S1) and ``gh_t = W h_{t-1} + bh`` (one stacked product):

    (G1)  [gh_r; gh_z; gh_n] = W h_{t-1} + bh                          (N, 3H)
    (G2)  r = sigmoid(G_r + gh_r),   z = sigmoid(G_z + gh_z)
    (G3)  n = tanh(G_n + r ⊙ gh_n)                                     gh_n = W_n h_{t-1} + bh_n, kept
    (G4)  h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}  =  n + z ⊙ (h_{t-1} - n)

The chain rule through time, written once: h_t feeds E_t (through V) and step t+1 along two paths, directly
(z ⊙ h_t) and through W (all three gates), so

    dE/dh_t = dq_t V + dE/dh_{t+1} ⊙ z_{t+1} + dGh_{t+1} W                        (B1, G9)

and the step's backward, with dh = dE/dh_t and a_* the gates' pre-activations:

    (G5)  da_n = dh ⊙ (1 - z) ⊙ (1 - n^2)
    (G6)  da_z = dh ⊙ (h_{t-1} - n) ⊙ z(1-z)
    (G7)  da_r = da_n ⊙ gh_n ⊙ r(1-r)
    (G8)  dG_t = [da_r; da_z; da_n]  (the delta of U x + b),   dGh_t = [da_r; da_z; r ⊙ da_n]  (of W h + bh)
    (G9)  dE/dh_{t-1} |_{via step t} = dh ⊙ z + dGh_t W        the direct path and the path through W

then (B3): dE/dU = sum_t dG_t^T x_t, dE/db = sum_t dG_t, dE/dW = sum_t dGh_t^T h_{t-1}, dE/dbh = sum_t dGh_t.

Forward mode (J2), with gh' = W' h_{t-1} + bh' + W h'_{t-1} and G' = U' x_t + b':
    r' = r(1-r)(G_r' + gh_r'),  z' = z(1-z)(G_z' + gh_z'),  n' = (1-n^2)(G_n' + r' gh_n + r gh_n'),
    h'_t = n' + z' (h_{t-1} - n) + z (h'_{t-1} - n').

Layers, directions, packed sequences and dropout are the skeleton's (recurrent.py: ST, BD, PK, DO). With
``bias=False`` there is neither b nor bh (torch's ``bias=False``): (G1) without bh.
"""

from __future__ import annotations

import numpy as np

from .activations import sigmoid
from .recurrent import Recurrent, rows


class GRU(Recurrent):
    """Gated recurrent unit ``h_t = GRU(x_t, h_{t-1})``, ``o_t = softmax(V h_t + c)``.

    Parameters
    ----------
    input_size, hidden_size : int
        D (features, or the vocabulary size for token ids), H.
    output_size : int or None
        K, the output layer's width; None: the bare recurrent module (torch's ``nn.GRU``), see ``recurrent``.
    loss : {"cross_entropy", "squared_error"}
    dtype : float32 or float64
    seed : int or None
    num_layers, bidirectional, batch_first, bias, dropout : keyword-only, torch's options and meanings
        (recurrent.py's module docstring).

    Attributes
    ----------
    params : dict
        ``"U" (3H, D)``, ``"W" (3H, H)``, ``"b" (3H,)`` (torch's ``bias_ih_l0``), ``"bh" (3H,)`` (torch's
        ``bias_hh_l0``: needed because r multiplies it), ``"V" (K, H)``, ``"c" (K,)``; blocks r, z, n. More
        layers and the reverse direction add ``U_l1``, ``bh_reverse``, ... (recurrent.py's table).
    """

    GATES = 3
    STATES = ("h",)
    TRACE_GATES = (
        ("r_t", "G2", "sigmoid(G_r + gh_r), the reset gate", "gates", 0),
        ("z_t", "G2", "sigmoid(G_z + gh_z), the update gate", "gates", 1),
        ("n_t", "G3", "tanh(G_n + r ⊙ gh_n), the candidate", "gates", 2),
        ("gh_n", "G3", "W_n h_{t-1} + bh_n, what the reset gate scales", "gh_n", None),
    )
    TRACE_DELTAS = (
        ("da_r", "G7", "dE/da_r, the reset gate's delta", 0),
        ("da_z", "G6", "dE/da_z, the update gate's delta", 1),
        ("da_n", "G5", "dE/da_n, the candidate's delta", 2),
    )
    HIDDEN_BIAS = True

    def __init__(self, input_size, hidden_size, output_size=None, loss="cross_entropy", dtype=np.float64,
                 seed=None, *, num_layers=1, bidirectional=False, batch_first=False, bias=True, dropout=0.0):
        super().__init__(input_size, hidden_size, output_size, loss=loss, dtype=dtype, seed=seed,
                         num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                         bias=bias, dropout=dropout)

    def _alloc_cache(self, cache, T, N, workspace=None):
        cache["gh_n"] = self._empty((T, N, self.hidden_size), workspace, "gh_n")  # W_n h_{t-1} + bh_n

    def _step(self, s, cache, work):
        H = self.hidden_size
        h, gh_n = cache["h"], cache["gh_n"]
        gates = cache["gates"][s]  # (N, 3H): holds U x_t + b, becomes [r z n]
        gh = np.matmul(h[s], cache["W_T"], out=work)  # (G1) one product for all three gates
        if "bh" in self.params:
            gh += self.params["bh"]  # (G1)
        gates[:, : 2 * H] += gh[:, : 2 * H]
        sigmoid(gates[:, : 2 * H], out=gates[:, : 2 * H])  # (G2) r, z
        r, z, n = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
        gh_n[s] = gh[:, 2 * H :]
        n += np.multiply(r, gh_n[s], out=gh[:, 2 * H :])  # (G3) G_n + r ⊙ gh_n
        np.tanh(n, out=n)  # (G3)
        h_t = h[s + 1]
        np.subtract(h[s], n, out=h_t)  # (G4) h_{t-1} - n
        h_t *= z
        h_t += n  # (G4) h_t = n + z ⊙ (h_{t-1} - n)

    def _step_back(self, start, stop, dstate, cache, dG):
        H = self.hidden_size
        (dh,) = dstate  # dE/dh_t, all paths from later (B1)
        gates = rows(cache["gates"], start, stop)
        r, z, n = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
        gh_n, h_prev = rows(cache["gh_n"], start, stop), rows(cache["h"], start, stop)
        da_n = dh * (1 - z) * (1 - n * n)  # (G5)
        dG[:, 2 * H :] = da_n
        dG[:, H : 2 * H] = dh * (h_prev - n) * z * (1 - z)  # (G6) da_z
        dG[:, :H] = da_n * gh_n * r * (1 - r)  # (G7) da_r
        dgh = dG.copy()
        dgh[:, 2 * H :] *= r  # (G8) dGh: the reset gate scales W_n h + bh_n
        return (dh * z + dgh @ self.params["W"],)  # (G9) direct path + path through W

    def _hidden_deltas(self, dG, cache):
        H = self.hidden_size
        dGh = dG.copy()
        dGh[..., 2 * H :] *= cache["gates"][..., :H]  # (G8) r ⊙ da_n for every t at once
        return dGh

    def _step_jvp(self, s, dgx, dgw, dprev, cache, dnext):
        H = self.hidden_size
        (dh_prev,), (dh,) = dprev, dnext
        dgh = dgw + dh_prev @ self.params["W"].T  # (J2) tangent of (G1)
        gates = cache["gates"][s]
        r, z, n = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
        gh_n, h_prev = cache["gh_n"][s], cache["h"][s]
        dr = r * (1 - r) * (dgx[:, :H] + dgh[:, :H])  # (J2) tangent of (G2)
        dz = z * (1 - z) * (dgx[:, H : 2 * H] + dgh[:, H : 2 * H])
        dn = (1 - n * n) * (dgx[:, 2 * H :] + dr * gh_n + r * dgh[:, 2 * H :])  # (J2) tangent of (G3)
        dh[...] = dn + dz * (h_prev - n) + z * (dh_prev - dn)  # (J2) tangent of (G4)
