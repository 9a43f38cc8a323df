"""LSTM, torch-compatible (``torch.nn.LSTM`` gate order i, f, g, o), on the skeleton of ``recurrent.py``.

The skeleton holds the output layer ``o_t = softmax(V h_t + c)``, the loss, the mask, truncation and the JVP
plumbing; this module is the cell. With ``G_t = U x_t + b`` hoisted out of the loop (S1), one step is

    (L1)  [a_i; a_f; a_g; a_o] = G_t + W h_{t-1}          (N, 4H): one product over the stacked gates
    (L2)  i = sigmoid(a_i),  f = sigmoid(a_f),  g = tanh(a_g),  o = sigmoid(a_o)
    (L3)  c_t = f ⊙ c_{t-1} + i ⊙ g
    (L4)  h_t = o ⊙ tanh(c_t)

The chain rule through time, written once. h_t feeds E_t (through V) and step t+1 (through W); c_t feeds h_t
and c_{t+1}. So, with dE/dh_t and dE/dc_t meaning total derivatives,

    dE/dh_t = dq_t V + (da_{t+1}) W                                              (B1)
    dE/dc_t = dE/dh_t ⊙ o_t ⊙ (1 - tanh^2 c_t) + dE/dc_{t+1} ⊙ f_{t+1}          (L5)

and the step's backward is

    (L5)  dc = dc_next + dh ⊙ o ⊙ (1 - tanh^2 c_t)       dc_next = dE/dc_{t+1} ⊙ f_{t+1}, from step t+1
    (L6)  da_i = dc ⊙ g ⊙ i(1-i),   da_f = dc ⊙ c_{t-1} ⊙ f(1-f),   da_g = dc ⊙ i ⊙ (1-g^2),
          da_o = dh ⊙ tanh(c_t) ⊙ o(1-o)                 the gate deltas, stacked as dG_t (N, 4H)
    (L7)  dE/dh_{t-1} |_{via step t} = dG_t W             the gate path into h_{t-1}
    (L8)  dE/dc_{t-1} |_{via c_t}    = dc ⊙ f              the cell-state path: dc_{t-1} = dc_t ⊙ f

then (B3): dE/dU = sum_t dG_t^T x_t, dE/dW = sum_t dG_t^T h_{t-1}, dE/db = sum_t dG_t.

Forward mode (J2), with a' the tangent of (L1):
    i' = i(1-i) a_i', f' = f(1-f) a_f', g' = (1-g^2) a_g', o' = o(1-o) a_o',
    c'_t = f' c_{t-1} + f c'_{t-1} + i' g + i g',   h'_t = o' tanh(c_t) + o (1 - tanh^2 c_t) c'_t.

Projection (torch's ``proj_size = P``, 0 < P < H): the state h_t and the output shrink to P through Wr (P, H),
and W becomes (4H, P); c_t keeps H. (L4) becomes

    (PR1)  m_t = o ⊙ tanh(c_t)   (N, H),     h_t = Wr m_t            rows: m @ Wr.T  (N, P)

and backward, with dE/dh_t (N, P) the total of (B1):

    (PR2)  the projection's delta is dE/dh_t itself; it is kept next to the gate deltas, dG_t = [da; dh_t]
           (N, 4H + P), so that truncation and packing (which sum and mask dG) treat it as the gates'
    (PR3)  dE/dm_t = dE/dh_t Wr            then (L5, L6) with dE/dm_t in the place of dE/dh_t
    (PR4)  dE/dWr = sum_t dh_t^T m_t        one product over all T*N rows, after the loop, as (B3)

Forward mode: (PR5) m'_t = o' tanh(c_t) + o (1 - tanh^2 c_t) c'_t,  h'_t = Wr m'_t + Wr' m_t.

Layers, directions, packed sequences and dropout are the skeleton's (recurrent.py: ST, BD, PK, DO); b is
torch's ``bias_ih + bias_hh`` (only their sum enters (L1)).
"""

from __future__ import annotations

import numpy as np

from .activations import sigmoid
from .recurrent import Recurrent, rows


class LSTM(Recurrent):
    """Long short-term memory net ``h_t, c_t = LSTM(x_t, h_{t-1}, c_{t-1})``, ``o_t = softmax(V h_t + c)``.

    Parameters
    ----------
    input_size, hidden_size : int
        D (features, or the vocabulary size for token ids), H.
    output_size : int or None
        K, the output layer's width; None: the bare recurrent module (torch's ``nn.LSTM``), see ``recurrent``.
    loss : {"cross_entropy", "squared_error"}
    dtype : float32 or float64
    seed : int or None
    num_layers, bidirectional, batch_first, bias, dropout, proj_size : keyword-only, torch's options and
        meanings (recurrent.py's module docstring; the projection: (PR1-PR5) above).

    Attributes
    ----------
    params : dict
        ``"U" (4H, D)``, ``"W" (4H, H)``, ``"b" (4H,)`` (blocks i, f, g, o as torch's ``weight_ih_l0``,
        ``weight_hh_l0``, ``bias_ih_l0``; torch's ``bias_hh_l0`` is 0), ``"V" (K, H)``, ``"c" (K,)``.

    The initial state is ``h0=(h0, c0)``, each ``(N, H)`` or None (zeros); ``grads`` carries ``"h0"`` and
    ``"c0"``; ``forward`` returns ``(P, (S, C))`` with S, C : (T+1, N, H); the final state returned by
    ``loss_and_grad(..., return_state=True)`` is the tuple ``(h_T, c_T)``.
    """

    GATES = 4
    STATES = ("h", "c")
    TRACE_GATES = (
        ("i_t", "L2", "sigmoid(a_i), the input gate", "gates", 0),
        ("f_t", "L2", "sigmoid(a_f), the forget gate", "gates", 1),
        ("g_t", "L2", "tanh(a_g), the candidate", "gates", 2),
        ("o_t", "L2", "sigmoid(a_o), the output gate", "gates", 3),
        ("m_t", "PR1", "o ⊙ tanh(c_t), before the projection (proj_size only)", "m", None),
    )
    TRACE_DELTAS = (
        ("da_i", "L6", "dE/da_i, the input gate's delta", 0),
        ("da_f", "L6", "dE/da_f, the forget gate's delta", 1),
        ("da_g", "L6", "dE/da_g, the candidate's delta", 2),
        ("da_o", "L6", "dE/da_o, the output gate's delta", 3),
    )
    PROJECTION = True
    OPTIONS = {**Recurrent.OPTIONS, "proj_size": 0}

    def __init__(self, input_size, hidden_size, output_size=None, loss="cross_entropy", dtype=np.float64,
                 seed=None, *, num_layers=1, bidirectional=False, batch_first=False, bias=True, dropout=0.0,
                 proj_size=0):
        super().__init__(input_size, hidden_size, output_size, loss=loss, dtype=dtype, seed=seed,
                         num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                         bias=bias, dropout=dropout, proj_size=proj_size)

    def _alloc_cache(self, cache, T, N, workspace=None):
        cache["tanh_c"] = self._empty((T, N, self.hidden_size), workspace, "tanh_c")  # tanh(c_t), t = 1..T
        if self.proj_size:
            cache["m"] = self._empty((T, N, self.hidden_size), workspace, "m")  # (PR1) o ⊙ tanh(c_t)
            cache["Wr_T"] = np.ascontiguousarray(self.params["Wr"].T)

    def _step(self, s, cache, work):
        H = self.hidden_size
        h, c, tanh_c = cache["h"], cache["c"], cache["tanh_c"]
        gates = cache["gates"][s]  # (N, 4H): holds U x_t + b, becomes [i f g o]
        gates += np.matmul(h[s], cache["W_T"], out=work)  # (L1) one product for all four gates
        # each gate on a contiguous copy of its block (elementwise work runs faster there than on the
        # strided views), then stored back for backward: the same operations, so the same values
        i, f, g, o = (gates[:, k * H : (k + 1) * H].copy() for k in range(4))  # copies, even where N = 1
        sigmoid(i, out=i)  # (L2)
        sigmoid(f, out=f)  # (L2)
        np.tanh(g, out=g)  # (L2)
        sigmoid(o, out=o)  # (L2)
        gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :] = i, f, g, o
        np.multiply(f, c[s], out=c[s + 1])  # (L3) f ⊙ c_{t-1}
        c[s + 1] += np.multiply(i, g, out=i)  # (L3) + i ⊙ g
        np.tanh(c[s + 1], out=tanh_c[s])
        if self.proj_size:
            m = np.multiply(o, tanh_c[s], out=cache["m"][s])  # (PR1) m_t = o ⊙ tanh(c_t)
            np.matmul(m, cache["Wr_T"], out=h[s + 1])  # (PR1) h_t = Wr m_t
        else:
            np.multiply(o, tanh_c[s], out=h[s + 1])  # (L4) h_t = o ⊙ tanh(c_t)

    def _step_back(self, start, stop, dstate, cache, dG):
        H = self.hidden_size
        dh, dc_next = dstate  # dE/dh_t (both paths, B1); dE/dc_{t+1} ⊙ f_{t+1}
        if self.proj_size:
            dG[:, 4 * H :] = dh  # (PR2) the projection's delta, for (PR4)
            dh = dh @ self.params["Wr"]  # (PR3) dE/dm_t
            dG = dG[:, : 4 * H]
        gates = rows(cache["gates"], start, stop)
        # each gate block copied out once: the ~20 products below run 2-3x faster on contiguous operands
        # than on the strided (row stride 4H) views, with the same values (so the same results)
        i, f, g, o = (np.ascontiguousarray(gates[:, k * H : (k + 1) * H]) for k in range(4))
        tc, c_prev = rows(cache["tanh_c"], start, stop), rows(cache["c"], start, stop)
        dc = dc_next + dh * o * (1 - tc * tc)  # (L5) dE/dc_t: via c_{t+1} and via h_t
        dG[:, :H] = dc * g * i * (1 - i)  # (L6) da_i
        dG[:, H : 2 * H] = dc * c_prev * f * (1 - f)  # (L6) da_f
        dG[:, 2 * H : 3 * H] = dc * i * (1 - g * g)  # (L6) da_g
        dG[:, 3 * H :] = dh * tc * o * (1 - o)  # (L6) da_o
        return dG @ self.params["W"], dc * f  # (L7) gate path into h_{t-1}; (L8) dc_{t-1} = dc_t ⊙ f

    def _step_jvp(self, s, dgx, dgw, dprev, cache, dnext):
        H = self.hidden_size
        (dh_prev, dc_prev), (dh, dc) = dprev, dnext
        da = dgx + dgw + dh_prev @ self.params["W"].T  # (J2) tangent of (L1)
        gates = cache["gates"][s]
        i, f, g, o = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]
        tc, c_prev = cache["tanh_c"][s], cache["c"][s]
        di = i * (1 - i) * da[:, :H]  # (J2) tangents of (L2)
        df = f * (1 - f) * da[:, H : 2 * H]
        dg = (1 - g * g) * da[:, 2 * H : 3 * H]
        do = o * (1 - o) * da[:, 3 * H :]
        dc[...] = df * c_prev + f * dc_prev + di * g + i * dg  # (J2) tangent of (L3)
        if self.proj_size:
            dm = do * tc + o * (1 - tc * tc) * dc  # (PR5) m'_t
            dh[...] = dm @ self.params["Wr"].T + cache["m"][s] @ cache["tangent_Wr"].T  # (PR5) h'_t
        else:
            dh[...] = do * tc + o * (1 - tc * tc) * dc  # (J2) tangent of (L4)

    def _hidden_deltas(self, dG, cache):
        return dG[..., : 4 * self.hidden_size] if self.proj_size else dG

    def _cell_grads(self, cache, dG) -> dict:
        if not self.proj_size:
            return {}
        T, N, H = dG.shape[0], dG.shape[1], self.hidden_size
        dh = dG.reshape(T * N, -1)[:, 4 * H :]  # (PR2) dE/dh_t, every t
        return {"Wr": dh.T @ cache["m"].reshape(T * N, H)}  # (PR4) sum_t dh_t^T m_t
