"""Traces: every intermediate of one forward and backward pass, under the names of the derivation.

``model.trace(X, Y, **kwargs)`` takes the keyword arguments of the model's ``loss_and_grad`` and runs the same
code: ``trace.loss`` and ``trace.grads`` are ``loss_and_grad``'s results bit for bit, and every entry is an
array that pass computed (or, where the pass overwrites an array in place, a copy taken at the moment it was
computed). A ``Trace`` is a read-only mapping from names to arrays, in the order the pass computes them, and
knows for each name the equation tag of the line that computes it and a one-line meaning.

The MLP (``mlp.py``; layers l = 1..L, ``a^(0) = X``; our l is the seed's l+1: it numbers the input layer 1):

    ==============  ===========  ==========================================================
    name            equation     array
    ==============  ===========  ==========================================================
    a^(0)           input        X : (N, n0)
    z^(l)           F1           W_l a^(l-1) + b_l, rows of the batch : (N, n_l)
    a^(l)           F2           f(z^(l)) : (N, n_l); a^(L) is the output (softmax/sigmoid too)
    E               loss         the batch-mean loss, a 0-d array (= ``trace.loss``)
    delta^(L)       BP1          dE/dz^(L) : (N, nL)
    dE/dW^(l)       BP3          delta^(l)^T a^(l-1) : (n_l, n_{l-1}),  = grads["W<l>"]
    dE/db^(l)       BP4          delta^(l) summed over the batch : (n_l,),  = grads["b<l>"]
    dE/da^(l)       BP2          delta^(l+1) W_{l+1} : (N, n_l), for l = L-1..1 (and 0 with input_grad)
    delta^(l)       BP2          dE/da^(l) ⊙ f'(z^(l)) : (N, n_l)
    ==============  ===========  ==========================================================

The recurrent nets (``recurrent.py`` and the cells; time-major ``(T, N, ...)`` arrays, or ``(N, T, ...)``
for batch-first models, as the model's own inputs). Step arrays hold t = 1..T; state arrays hold t = 0..T,
with the initial state at index 0. For every cell (layer l, direction d) the names carry the parameters'
suffix (``_l1``, ``_reverse``; none for layer 0's forward cell), and a reverse cell's arrays are in its own
processing order: its step s reads x_{T+1-s} (x_{L_n+1-s} with lengths), (BD1, PK3).

    ==================  ==========  =====================================================================
    name                equation    array
    ==================  ==========  =====================================================================
    x_t                 input       X (floats (T, N, D), or token ids (T, N))
    h_t / s_t (RNN)     S2          the hidden state : (T+1, N, H_out)
    c_t                 L3          the LSTM's cell state : (T+1, N, H)
    gates               cell tags   RNN z_t (R1); LSTM i_t f_t g_t o_t (L2) [m_t (PR1)]; GRU r_t z_t (G2),
                                    n_t, gh_n (G3) : (T, N, H) each
    q_t                 O1          the logits V y_t + c : (T, N, K)
    yhat_t              O1          softmax(q_t) (cross_entropy) or q_t (squared_error) : (T, N, K)
    E_t                 O2          each step's loss per sequence, masked (not yet / N) : (T, N)
    E                   O3          the batch loss, a 0-d array (= ``trace.loss``)
    dE/dq_t             O4          m_t (yhat_t - y_t) / N : (T, N, K)
    dE/dV, dE/dc        O5          the head's gradients (each parameter's gradient is dE/d<param>)
    dE/dh_t, dE/ds_t    B1          what reaches h_t (s_t: the RNN's) along every path that the truncation
                                    keeps, t = T..1, and dE/dh_0 (B4) at index 0 : (T+1, N, H_out)
    dE/dc_t             L8          the LSTM's dE/dc_t through c_{t+1} (h_t held fixed, as ``retain_grad``
                                    on torch's state tensors shows it) : (T+1, N, H)
    gate deltas         cell tags   RNN delta_t (R3); LSTM da_i da_f da_g da_o (L6);
                                    GRU da_r (G7), da_z (G6), da_n (G5) : (T, N, H) each
    dE/dU, dE/dW, ...   B3          the cell's gradients, = grads[...]
    window              TR          (T, 2) integers: the first and last step each E_t's gradient reached,
                                    max(1, t-k) and t with ``truncate=k`` (1 and t for full BPTT)
    dropout_mask_l<l>   DO1         the scaled keep mask between layers l and l+1 (only when one was used)
    ==================  ==========  =====================================================================

With truncation, dE/dh_t is the sum over the windows that hold step t of what each E_t's chain carries there:
the quantity whose step-back (B2) gives the gate deltas that (B3) sums, so that the trace's gate deltas and
grads are the truncated gradient's own.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class Trace(Mapping):
    """A read-only mapping ``name -> array`` of one pass's intermediates (module docstring for the names).

    Attributes
    ----------
    model : str
        The model's class name.
    loss : float
        The loss, equal to ``loss_and_grad``'s.
    grads : dict
        The gradients, equal (bit for bit) to ``loss_and_grad``'s.
    state : the final state (recurrent models with ``return_state=True``), else None.
    """

    def __init__(self, model: str, loss: float, grads: dict, state=None):
        self.model = model
        self.loss = float(loss)
        self.grads = grads
        self.state = state
        self._arrays: dict = {}
        self._tags: dict = {}
        self._meanings: dict = {}

    def add(self, name: str, array, tag: str, meaning: str) -> None:
        """Record ``name`` (a copy of ``array``, made read-only); used by the models while they trace."""
        if name in self._arrays:
            raise ValueError(f"trace entry {name!r} recorded twice")
        arr = np.array(array, copy=True)
        arr.flags.writeable = False
        self._arrays[name] = arr
        self._tags[name] = tag
        self._meanings[name] = meaning

    def __getitem__(self, name):
        try:
            return self._arrays[name]
        except KeyError:
            raise KeyError(
                f"{name!r} is not in this {self.model} trace; it holds: {', '.join(self._arrays)}"
            ) from None

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self):
        return len(self._arrays)

    def equation(self, name: str) -> str:
        """The equation tag of the line that computes ``name`` (e.g. ``"BP2"``)."""
        self[name]
        return self._tags[name]

    def meaning(self, name: str) -> str:
        """A one-line description of ``name``."""
        self[name]
        return self._meanings[name]

    def table(self) -> str:
        """A plain-text table: name, shape, equation, meaning; one row per entry, in the order computed."""
        rows = [("name", "shape", "eq.", "meaning")]
        rows += [(k, str(v.shape), self._tags[k], self._meanings[k]) for k, v in self._arrays.items()]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(
            "  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows
        )

    def __repr__(self):
        return f"<Trace of {self.model}: loss={self.loss:.6g}, {len(self)} entries: {', '.join(self)}>"
