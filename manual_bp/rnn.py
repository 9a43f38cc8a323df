"""Vanilla RNN: the seed's chain of three-layer nets sharing U, W, V across time, as ``torch.nn.RNN``.

The cell, on the skeleton of ``recurrent.py`` (which holds the output layer, loss, (O1-O5), (B1), (B3),
truncation and JVP plumbing). With ``G_t = U x_t + b`` hoisted out of the loop (S1):

    (R1)  z_t = G_t + W s_{t-1}              = U x_t + W s_{t-1} + b          (N, H), one product per step
    (R2)  s_t = f(z_t)                       f = tanh (default) or relu, as torch.nn.RNN

BPTT, with dE/ds_t already holding both paths (B1: from E_t through V and from s_{t+1} through W):

    (R3)  delta_t = dE/ds_t ⊙ f'(z_t)       f' = 1 - s_t^2 (tanh), [z_t > 0] (relu)
    (R4)  dE/ds_{t-1} |_{via step t} = delta_t W                   rows: delta @ W
    then (B3): dE/dW = sum_t delta_t^T s_{t-1}, dE/dU = sum_t delta_t^T x_t, dE/db = sum_t delta_t.

Forward mode (J2): s'_t = f'(z_t) ⊙ (U' x_t + b' + W' s_{t-1} + W s'_{t-1}).

Layers, directions, packed sequences and dropout are the skeleton's (recurrent.py: ST, BD, PK, DO); b is
torch's ``bias_ih + bias_hh`` (only their sum enters (R1)).
"""

from __future__ import annotations

import numpy as np

from ._validation import check_choice
from .recurrent import Recurrent, rows

NONLINEARITIES = ("tanh", "relu")


class RNN(Recurrent):
    """Elman RNN ``s_t = f(U x_t + W s_{t-1} + b)``, ``o_t = softmax(V s_t + c)``, trained by BPTT.

    Parameters
    ----------
    input_size, hidden_size : int
        D (features, or the vocabulary size for token ids), H.
    output_size : int or None
        K, the output layer's width; None: the bare recurrent module (torch's ``nn.RNN``), see ``recurrent``.
    nonlinearity : {"tanh", "relu"}
    loss : {"cross_entropy", "squared_error"}
        cross_entropy: softmax outputs and integer targets (T, N); squared_error: identity outputs
        ``o_t = V s_t + c`` and float targets (T, N, K).
    dtype : float32 or float64
    seed : int or None
    num_layers, bidirectional, batch_first, bias, dropout : keyword-only, torch's options and meanings
        (recurrent.py's module docstring: stacking (ST), directions (BD), dropout between layers (DO)).

    Attributes
    ----------
    params : dict
        ``"U" (H, D)``, ``"W" (H, H)``, ``"b" (H,)``, ``"V" (K, H)``, ``"c" (K,)``; torch's ``weight_ih_l0``,
        ``weight_hh_l0``, ``bias_ih_l0 + bias_hh_l0`` and ``nn.Linear(H, K)``. More layers and the reverse
        direction add ``U_l1``, ``W_reverse``, ... (recurrent.py's table).

    Example
    -------
    >>> rnn = RNN(5, 8, 5, seed=0)
    >>> X = np.array([[0, 1], [2, 3], [4, 0]])           # token ids (T=3, N=2)
    >>> loss, grads, s_T = rnn.loss_and_grad(X, X, truncate=1, return_state=True)
    """

    GATES = 1
    STATES = ("h",)
    STATE_NAMES = {"h": "s"}
    TRACE_GATES = (("z_t", "R1", "U x_t + W s_{t-1} + b, the pre-activation", "gates", None),)
    TRACE_DELTAS = (("delta_t", "R3", "dE/dz_t = dE/ds_t ⊙ f'(z_t), the step's delta", 0),)

    def __init__(self, input_size, hidden_size, output_size=None, nonlinearity="tanh", loss="cross_entropy",
                 dtype=np.float64, seed=None, *, num_layers=1, bidirectional=False, batch_first=False,
                 bias=True, dropout=0.0):
        self.nonlinearity = check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        super().__init__(input_size, hidden_size, output_size, loss=loss, dtype=dtype, seed=seed,
                         num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                         bias=bias, dropout=dropout)

    def config(self) -> dict:
        return {**super().config(), "nonlinearity": self.nonlinearity}

    def _step(self, s, cache, work):
        h, z = cache["h"], cache["gates"][s]  # gates[s] holds U x_t + b and becomes z_t
        z += np.matmul(h[s], cache["W_T"], out=work)  # (R1) z_t = U x_t + W s_{t-1} + b
        if self.nonlinearity == "tanh":
            np.tanh(z, out=h[s + 1])  # (R2)
        else:
            np.maximum(z, 0, out=h[s + 1])  # (R2)

    def _fprime(self, z, a):
        """f'(z_t) from z_t and s_t = f(z_t)."""
        if self.nonlinearity == "tanh":
            return 1 - a * a
        return z > 0  # 0 at the kink, as torch

    def _step_back(self, start, stop, dstate, cache, dG):
        (ds,) = dstate  # dE/ds_t, both paths (B1)
        z, s_t = rows(cache["gates"], start, stop), rows(cache["h"], start + 1, stop + 1)
        delta = np.multiply(ds, self._fprime(z, s_t), out=dG)  # (R3) delta_t = dE/ds_t ⊙ f'(z_t)
        return (delta @ self.params["W"],)  # (R4) dE/ds_{t-1} = delta_t W

    def _step_jvp(self, s, dgx, dgw, dprev, cache, dnext):
        (ds_prev,), (ds,) = dprev, dnext
        dz = dgx + dgw + ds_prev @ self.params["W"].T  # (J2) tangent of (R1)
        np.multiply(self._fprime(cache["gates"][s], cache["h"][s + 1]), dz, out=ds)  # (J2) tangent of (R2)

    def __repr__(self):
        opts = "".join(f", {k}={getattr(self, k)!r}" for k, v in self.OPTIONS.items()
                       if getattr(self, k) != v)
        return (
            f"RNN({self.input_size}, {self.hidden_size}, {self.output_size}, "
            f"nonlinearity={self.nonlinearity!r}, "
            f"loss={self.loss_name!r}, dtype={self.dtype.name}{opts})"
        )
