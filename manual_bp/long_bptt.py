"""Gradients of sequences of any length: checkpointed BPTT (sqrt(T) segments, binomial "revolve") and RTRL.

Full BPTT (``recurrent.py``) keeps every step's cache, ``(T, N, ...)`` arrays: its memory grows with T. Two
ways out, both giving the full-BPTT gradient exactly (no truncation), for one-layer RNN, LSTM and GRU.

Checkpointed BPTT: store some states, recompute the rest
---------------------------------------------------------
A *turn* over the steps ``start:stop`` runs the forward pass from the stored state s_start keeping its cache,
then backpropagates through those steps alone. Everything BPTT needs of a segment is inside it:

    (CP1)  E = sum_seg E_seg,   dq_t = m_t (o_t - y_t) / N from the segment's own states (O4)
    (CP2)  dE/ds_stop enters the segment from the later one; (B1, B2) run over its steps and hand
           dE/ds_start to the earlier one (zeros enter the last segment; what leaves the first is (B4))
    (CP3)  dE/dV, dE/dc, dE/dU, dE/dW, dE/db [, dE/dbh] = the sum over segments of (O5) and (B3)

so the turns run from the last segment to the first, each one's (CP2) output feeding the next. A
:class:`Schedule` says which states to store (*takeshot*), when to go back to one (*restore*), how far to run
forward without keeping a cache (*advance*) and which steps to turn (*firsturn*: the last steps, entered with
dE/ds_T = 0; *youturn*: the rest); *free* drops a snapshot no longer needed. Two schedules:

- ``"sqrt"``: segments of L = ceil(sqrt(T)) steps. One forward sweep stores each segment's first state, the
  last segment is turned at once, then each earlier one is restored and turned. ceil(T/L) - 1 stored states
  and one segment's cache (about 2 sqrt(T) states' worth of memory); T - L_last extra forward steps.
- an integer s: Griewank & Walther's binomial schedule ("Algorithm 799: revolve", ACM TOMS 26(1), 2000) for
  at most s stored states (the initial one included) and turns of one step: the fewest forward steps any
  schedule with s snapshots can take. With

    (RV1)  beta(s, r) = C(s + r, s)          the most steps s snapshots reverse when no step is advanced more
                                             than r times (r: the repetition number)
    (RV2)  r(l, s) = min { r : beta(s, r) >= l }
    (RV3)  t(l, s) = r l - beta(s + 1, r - 1)     the fewest advanced steps to reverse l steps (r = r(l, s))

  the schedule reverses l steps from a stored state a with s snapshots recursively: advance m steps, store
  state a + m, reverse the l - m steps after it with s - 1 snapshots, then restore a and reverse its m steps
  with s snapshots; with s = 1, advance from a to each step in turn. The cost m + t(m, s) + t(l - m, s - 1)
  is smallest exactly for

    (RV4)  max(1, l - beta(s-1, r), beta(s, r-2)) <= m <= min(l-1, beta(s, r-1), l - beta(s-1, r-1))

  (checked against the dynamic programme min_m [m + t(m, s) + t(l-m, s-1)] in the tests); the schedule takes
  the smallest such m. Its advances add up to t(T, s) exactly; T steps more are run inside the turns.

Memory: at most s (or ceil(T/L) - 1) stored states, one turn's cache, and advances run in blocks of at most
``ADVANCE_BLOCK`` steps (or L). The data are validated and converted block by block (``VALIDATE_BLOCK``
steps), so no array with a (T, N, ...) shape is ever allocated besides the caller's own inputs.

Forward in time: real-time recurrent learning (RTRL)
----------------------------------------------------
Williams & Zipser, Neural Computation 1(2), 1989, in the notation of Marschall, Cho & Savin, JMLR 21, 2020:
a_t the state (h_t; for the LSTM the pair (h_t, c_t)), theta = (U, W, b [, bh]) flattened to P numbers and
the initial state s_0 as S*H more (S state parts). The influence matrix M_t = da_t/dtheta, per sequence
``(N, S*H, P + S*H)`` with one block per state part ``(N, H, P + S*H)``, obeys

    (RTRL1)  M_t = J_t M_{t-1} + Mbar_t       J_t = da_t/da_{t-1}, Mbar_t = the immediate influence (a_{t-1}
                                              held fixed); M_0 = [0 | I] (a_0 = s_0 is its own parameter)
    (RTRL2)  dE/dtheta = sum_t cbar_t M^h_t,   cbar_t = dE_t/dh_t = dq_t V  (O4: only h feeds the loss)
             dE/ds_0   = the same sum over the s_0 columns, per sequence (B4)
             dE/dV, dE/dc as (O5), accumulated step by step

Every cell starts from its gate pre-activations, linear in theta. Their influence is the direct part, a
Kronecker pattern (pre-activation row k depends on row k of U, W, b only), plus the path through h_{t-1}:

    (RTRL3)  A_t = d(U x_t + b + W h_{t-1})/dtheta = Abar_t + W M^h_{t-1}      (N, nG*H, P + S*H)
             Abar_t[k, U_kd] = x_t,d   Abar_t[k, W_kj] = h_{t-1,j}   Abar_t[k, b_k] = 1    (0 elsewhere)

and then each cell's derivatives are elementwise (⊙ scales the rows of an influence block).

RNN, h_t = f(z_t), z_t = U x_t + W h_{t-1} + b (R1, R2):

    (RTRL4)  M^h_t = f'(z_t) ⊙ A_t

LSTM (L1-L4), A_t = [A_i; A_f; A_g; A_o]:

    (RTRL5)  M^c_t = f ⊙ M^c_{t-1} + c_{t-1} f(1-f) ⊙ A_f + g i(1-i) ⊙ A_i + i (1-g^2) ⊙ A_g
    (RTRL6)  M^h_t = tanh(c_t) o(1-o) ⊙ A_o + o (1 - tanh^2 c_t) ⊙ M^c_t

GRU (G1-G4), where the reset gate multiplies W_n h + bh_n, so the two projections keep apart:

    (RTRL7)  B_t = d(W h_{t-1} + bh)/dtheta = Bbar_t + W M^h_{t-1}     (Bbar: h_{t-1} in W's rows, 1 at bh)
             C_t = d(U x_t + b)/dtheta = Cbar_t                        (x_t in U's rows, 1 at b)
    (RTRL8)  R_t = r(1-r) ⊙ (C_r + B_r),   Z_t = z(1-z) ⊙ (C_z + B_z),
             Nn_t = (1-n^2) ⊙ (C_n + gh_n ⊙ R_t + r ⊙ B_n)
    (RTRL9)  M^h_t = (1-z) ⊙ Nn_t + (h_{t-1} - n) ⊙ Z_t + z ⊙ M^h_{t-1}

Cost per step and sequence: the product W M^h_{t-1}, nG*H x H x (P + S*H) with P ~ nG*H*(D + H): O(H^4) for
fixed D (the RNN: 2 H^2 P flops), against BPTT's O(H^2). Memory: the influence matrices and one block of
``RTRL_BLOCK`` steps' cache, the same for every T.
"""

from __future__ import annotations

from math import comb, isqrt
from typing import NamedTuple

import numpy as np

from .gru import GRU
from .lstm import LSTM
from .recurrent import Recurrent, Workspace
from .rnn import RNN

__all__ = [
    "Action",
    "Schedule",
    "revolve_beta",
    "revolve_repetitions",
    "revolve_forward_steps",
    "loss_and_grad_checkpointed",
    "rtrl",
]

#: steps validated (and converted) at a time: the validation's own arrays never have T in their shape
VALIDATE_BLOCK = 512
#: the most steps one advance keeps a cache for (revolve; "sqrt" advances one segment at a time)
ADVANCE_BLOCK = 32
#: steps whose forward cache RTRL holds at a time
RTRL_BLOCK = 32


# ---------------------------------------------------------------------------------------------- revolve
def revolve_beta(s: int, r: int) -> int:
    """(RV1) ``beta(s, r) = C(s + r, s)``: the steps s snapshots reverse, none advanced over r times."""
    return comb(s + r, s) if r >= 0 else 0


def revolve_repetitions(steps: int, snapshots: int) -> int:
    """(RV2) the repetition number: the smallest r with ``beta(snapshots, r) >= steps``."""
    r = 0
    while revolve_beta(snapshots, r) < steps:
        r += 1
    return r


def revolve_forward_steps(steps: int, snapshots: int) -> int:
    """(RV3) the fewest forward steps (outside the turns) that reverse ``steps`` steps with ``snapshots``."""
    if steps <= 1:
        return 0
    r = revolve_repetitions(steps, snapshots)
    return r * steps - revolve_beta(snapshots + 1, r - 1)


class Action(NamedTuple):
    """One schedule action on states ``start`` and ``stop`` (state k: after k steps; state 0 is s_0).

    - ``takeshot k``: store the current state, which is state k;
    - ``restore k``: the current state becomes the stored state k;
    - ``free k``: drop the stored state k;
    - ``advance a->b``: run steps a+1..b from the current state a, keeping no cache;
    - ``firsturn a->b`` / ``youturn a->b``: run steps a+1..b from the current state a keeping their cache,
      then backpropagate through them; the first turn holds the last step (T), each later one ends where
      the one before began. After a turn the current state is gone (restore one).
    """

    kind: str
    start: int
    stop: int

    def __str__(self):
        if self.kind in ("takeshot", "restore", "free"):
            return f"{self.kind} {self.start}"
        return f"{self.kind} {self.start}->{self.stop}"


class Schedule:
    """A checkpointing schedule for T steps: a lazily generated sequence of :class:`Action`.

    ``Schedule(T, "sqrt")`` or ``Schedule(T, s)`` (see the module docstring). ``list(schedule)`` or
    ``print(schedule)`` shows the actions; the generator holds O(s) state, never O(T), so a schedule for a
    million steps costs nothing until it is run.

    Attributes
    ----------
    T : int
    kind : "sqrt" or "revolve"
    snapshots : int, the most states stored at once (s for revolve, at most; ceil(T/L) - 1 for sqrt)
    segment : int, the steps per turn (L for sqrt, 1 for revolve)
    repetitions : int, r(T, s) (revolve; for sqrt 1, or 0 when T = 1)
    forward_steps : int, the steps advanced outside the turns: t(T, s) (RV3), or T - L_last for sqrt
    """

    def __init__(self, T, snapshots="sqrt"):
        T = _check_count("T", T)
        snapshots = _check_snapshots(snapshots)
        self.T = T
        if snapshots == "sqrt":
            self.kind = "sqrt"
            L = isqrt(T - 1) + 1 if T > 1 else 1  # ceil(sqrt(T))
            self.segment = L
            n_seg = -(-T // L)
            self.snapshots = n_seg - 1
            self.forward_steps = (n_seg - 1) * L
            self.repetitions = 1 if n_seg > 1 else 0
        else:
            self.kind = "revolve"
            self.segment = 1
            self.snapshots = snapshots
            self.repetitions = revolve_repetitions(T, snapshots)
            self.forward_steps = revolve_forward_steps(T, snapshots)

    def __iter__(self):
        return self._sqrt() if self.kind == "sqrt" else self._revolve()

    def _sqrt(self):
        T, L = self.T, self.segment
        starts = list(range(0, T, L))
        for a, b in zip(starts[:-1], starts[1:]):
            yield Action("takeshot", a, a)
            yield Action("advance", a, b)
        yield Action("firsturn", starts[-1], T)
        for a, b in zip(reversed(starts[:-1]), reversed(starts[1:])):
            yield Action("restore", a, a)
            yield Action("free", a, a)  # the turn below is the last use of state a
            yield Action("youturn", a, b)

    def _revolve(self):
        T = self.T
        first = [True]

        def turn(a):
            kind = "firsturn" if first[0] else "youturn"
            first[0] = False
            return Action(kind, a, a + 1)

        if T > 1:
            yield Action("takeshot", 0, 0)
        stored = {0} if T > 1 else set()
        current = 0
        # frames (a, b, s, r): reverse steps a+1..b from the stored state a with s snapshots (a's included);
        # r is an upper bound on the repetition number r(b - a, s) (RV2)
        stack = [(0, T, self.snapshots, self.repetitions)]
        while stack:
            a, b, s, r = stack.pop()
            if b in stored:  # everything after state b is reversed: its snapshot is done with
                stored.discard(b)
                yield Action("free", b, b)
            l = b - a
            if l == 1:
                if current != a:
                    yield Action("restore", a, a)
                yield turn(a)
                current = None
                continue
            if s == 1:  # one snapshot: advance from a to each step, last to first
                for j in range(b, a, -1):
                    if current != a:
                        yield Action("restore", a, a)
                    if j - 1 > a:
                        yield Action("advance", a, j - 1)
                    yield turn(j - 1)
                    current = None
                continue
            while r > 0 and revolve_beta(s, r - 1) >= l:
                r -= 1  # (RV2) r(l, s) from above
            m = max(1, l - revolve_beta(s - 1, r), revolve_beta(s, r - 2))  # (RV4) the smallest optimal split
            if current != a:
                yield Action("restore", a, a)
            yield Action("advance", a, a + m)
            yield Action("takeshot", a + m, a + m)
            stored.add(a + m)
            current = a + m
            stack.append((a, a + m, s, r))  # the first m steps, after the rest, with the freed snapshot
            stack.append((a + m, b, s - 1, r))  # the l - m steps after state a + m, now

    def __len__(self):
        return sum(1 for _ in self)

    def __repr__(self):
        what = f"s={self.snapshots}, r={self.repetitions}" if self.kind == "revolve" else f"L={self.segment}"
        return f"Schedule(T={self.T}, {self.kind}, {what}, forward_steps={self.forward_steps})"

    def __str__(self):
        return "\n".join([repr(self)] + [f"  {a}" for a in self])


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {value}")
    return int(value)


def _check_snapshots(snapshots):
    if isinstance(snapshots, str):
        if snapshots != "sqrt":
            raise ValueError(f"snapshots must be 'sqrt' or an integer >= 1; got {snapshots!r}")
        return snapshots
    if isinstance(snapshots, bool) or not isinstance(snapshots, (int, np.integer)):
        raise TypeError(f"snapshots must be 'sqrt' or an integer >= 1; got {type(snapshots).__name__} "
                        f"{snapshots!r}")
    if snapshots < 1:
        raise ValueError(f"snapshots must be 'sqrt' or an integer >= 1; got {snapshots}")
    return int(snapshots)


# ---------------------------------------------------------------------------------------------- data
def _check_model(model, what):
    if not isinstance(model, Recurrent):
        raise TypeError(f"{what} needs a manual_bp RNN, LSTM or GRU; got {type(model).__name__}")
    layers = getattr(model, "num_layers", 1)
    if layers != 1 or getattr(model, "bidirectional", False):
        raise ValueError(f"{what} supports one-layer, one-direction models; got num_layers={layers}, "
                         f"bidirectional={getattr(model, 'bidirectional', False)}")
    if getattr(model, "output_size", 1) is None:
        raise TypeError(f"{what} needs an output layer (a loss); this {type(model).__name__} has "
                        f"output_size=None")


def _state_sizes(model) -> tuple:
    """The width of each state part: H (the projected LSTM's h: H_out)."""
    size = getattr(model, "_part_size", None)
    return tuple(model.hidden_size if size is None else size(part) for part in model.STATES)


class _Data:
    """The caller's X, Y and mask, validated once block by block; ``block(a, b)`` gives steps a..b-1.

    Every check is the model's own (``_check_all`` on ``VALIDATE_BLOCK`` steps at a time), so the errors are
    those of ``loss_and_grad``; on a failure the whole sequence is checked again, so that the message indexes
    the whole sequence. Converted blocks are kept, the two most recently used, for the schedule's next steps.
    """

    def __init__(self, model, X, Y, h0, mask):
        self.model = model
        X, Y = np.asarray(X), np.asarray(Y)
        mask = None if mask is None else np.asarray(mask)
        self.t_axis = t = 1 if getattr(model, "batch_first", False) else 0
        T = X.shape[t] if X.ndim > t else 0
        aligned = (X.ndim >= 2 and T >= 1 and Y.ndim > t and Y.shape[t] == T
                   and (mask is None or (mask.ndim > t and mask.shape[t] == T)))
        if not aligned:
            model._check_all(X, Y, h0, mask)  # raises the model's own message for the whole sequence
            raise ValueError(f"X, Y and mask must share their time axis; got X {X.shape}, Y {Y.shape}"
                             + ("" if mask is None else f", mask {mask.shape}"))
        self.X, self.Y, self.mask, self.T, self.N = X, Y, mask, T, X.shape[1 - t]
        self._kept = {}
        try:
            for k in range(-(-T // VALIDATE_BLOCK)):
                _, s0 = self._convert(k, h0 if k == 0 else None)
                if k == 0:
                    self.state0 = s0
        except (TypeError, ValueError):
            model._check_all(X, Y, h0, mask)  # the same error, indexed in the whole sequence
            raise

    def _convert(self, k, h0=None):
        """Block k (steps k*B .. (k+1)*B - 1) as ``_check_all`` returns it, time-major."""
        a, b = k * VALIDATE_BLOCK, min(self.T, (k + 1) * VALIDATE_BLOCK)
        cut = (slice(a, b),) if self.t_axis == 0 else (slice(None), slice(a, b))
        mask = None if self.mask is None else self.mask[cut]
        X, is_ids, Y, state0, mask = self.model._check_all(self.X[cut], self.Y[cut], h0, mask)
        return (X, is_ids, Y, mask), state0

    def _block(self, k):
        if k not in self._kept:
            if len(self._kept) >= 2:
                del self._kept[next(iter(self._kept))]
            self._kept[k] = self._convert(k)[0]
        return self._kept[k]

    def block(self, a, b):
        """Steps a..b-1, time-major, converted as ``loss_and_grad`` does: ``(X, is_ids, Y, mask)``."""
        B = VALIDATE_BLOCK
        pieces = []
        for k in range(a // B, (b - 1) // B + 1):
            X, is_ids, Y, mask = self._block(k)
            lo, hi = max(a, k * B) - k * B, min(b, (k + 1) * B) - k * B
            pieces.append((X[lo:hi], Y[lo:hi], None if mask is None else mask[lo:hi]))
        if len(pieces) == 1:
            X, Y, mask = pieces[0]
        else:
            X, Y, mask = (None if p[0] is None else np.concatenate(p) for p in zip(*pieces))
        return X, is_ids, Y, mask


# ---------------------------------------------------------------------------------------------- checkpointed
def loss_and_grad_checkpointed(model, X, Y, h0=None, mask=None, snapshots="sqrt", return_state=False,
                               truncate=None, workspace=None):
    """The loss and its full-BPTT gradient, storing only some states and recomputing the rest.

    Parameters
    ----------
    model : RNN, LSTM or GRU (one layer)
    X, Y, h0, mask, return_state : as ``model.loss_and_grad``
    snapshots : "sqrt" (segments of ceil(sqrt(T)) steps) or int s >= 1 (the revolve schedule for s stored
        states); see :class:`Schedule`
    truncate : must be None: checkpointing recomputes full BPTT (truncation already keeps memory small)
    workspace : a ``Workspace`` for the turns' caches (reused from call to call), or None

    Returns
    -------
    ``(loss, grads)`` or ``(loss, grads, state)`` as ``model.loss_and_grad`` (the same keys, ``"h0"`` and
    ``"c0"`` included), equal to full BPTT up to the order of the sums (CP3).
    """
    _check_model(model, "loss_and_grad_checkpointed")
    if truncate is not None:
        raise ValueError(f"truncate is not supported with snapshots (checkpointing computes the full-BPTT "
                         f"gradient); got truncate={truncate!r}")
    snapshots = _check_snapshots(snapshots)
    if workspace is not None and not isinstance(workspace, Workspace):
        raise TypeError(f"workspace must be a manual_bp.Workspace or None; got {type(workspace).__name__}")
    data = _Data(model, X, Y, h0, mask)
    schedule = Schedule(data.T, snapshots)
    return _run_schedule(model, data, schedule, return_state, workspace or Workspace())


def _advance(model, data, a, b, state, block, workspace):
    """The state after steps a+1..b from ``state`` (state a), run ``block`` steps at a time (S1, S2)."""
    for start in range(a, b, block):
        stop = min(b, start + block)
        X, is_ids, _, _ = data.block(start, stop)
        cache = model._forward(X, is_ids, state, workspace)
        state = tuple(cache[part][-1].copy() for part in model.STATES)
    return state


def _turn(model, data, a, b, state, dstate, grads, workspace):
    """Forward steps a+1..b from ``state`` keeping the cache, then back through them (CP1-CP3).

    ``dstate``: dE/ds_b (None for the last segment); ``grads``: the running sums, added to in place.
    Returns ``(E_seg, dE/ds_a, final state s_b)``.
    """
    X, is_ids, Y, mask = data.block(a, b)
    L, N, K = b - a, data.N, model.output_size
    H = model.params["V"].shape[1]  # the width of h (H_out for a projected LSTM)
    cache = model._forward(X, is_ids, state, workspace)  # (S1, S2) steps a+1..b
    E, dq, _ = model._loss_and_delta(model._logits(cache), Y, mask)  # (O1-O4) (CP1)
    dq2 = dq.reshape(L * N, K)
    h = cache["h"]
    seg = {
        "V": dq2.T @ h[1:].reshape(L * N, H),  # (O5) (CP3)
        "c": dq2.sum(axis=0),  # (O5) (CP3)
    }
    dh_out = np.matmul(dq2, model.params["V"], out=workspace.empty("dh_out", (L * N, H), model.dtype))
    dh_out = dh_out.reshape(L, N, H)  # (B1) first path: E_t through V
    width = getattr(model, "_delta_width", model.GATES * model.hidden_size)  # dG's columns
    dG = workspace.empty("dG", (L, N, width), model.dtype)
    if dstate is None:
        dstate = tuple(np.zeros((N, n), dtype=model.dtype) for n in _state_sizes(model))  # dE/ds_T = 0
    for s in range(L - 1, -1, -1):
        np.add(dstate[0], dh_out[s], out=dstate[0])  # (B1) dE/dh_t = dq_t V + dE/dh_t from step t+1
        dstate = model._step_back(s, s + 1, dstate, cache, dG[s])  # (B2) (CP2)
    seg.update(model._weight_grads(cache, dG))  # (B3) over the segment's rows
    for k, g in seg.items():
        if k in grads:
            grads[k] += g  # (CP3)
        else:
            grads[k] = np.array(g, dtype=model.dtype, order="K")
    final = tuple(cache[part][L].copy() for part in model.STATES)
    return E, dstate, final


def _run_schedule(model, data, schedule, return_state, workspace):
    """Carry out ``schedule`` (see :class:`Action`): the loss, the gradients, the final state."""
    advance_ws = Workspace()
    block = max(ADVANCE_BLOCK, schedule.segment)
    stored = {}
    state = data.state0  # the current state
    dstate, final, E, grads = None, None, 0.0, {}
    for act in schedule:
        kind, a, b = act
        if kind == "takeshot":
            stored[a] = state  # states are never written in place: a reference is a snapshot
        elif kind == "restore":
            state = stored[a]
        elif kind == "free":
            del stored[a]
        elif kind == "advance":
            state = _advance(model, data, a, b, state, block, advance_ws)
        else:  # firsturn / youturn
            E_seg, dstate, s_b = _turn(model, data, a, b, state, dstate, grads, workspace)
            E += E_seg  # (CP1)
            if b == data.T:
                final = s_b
            state = None
    out = {k: grads[k] for k in model.params}
    for part, d in zip(model.STATES, dstate):
        out[f"{part}0"] = d  # (B4)
    if return_state:
        return E, out, model.public_state(final)
    return E, out


# ---------------------------------------------------------------------------------------------- RTRL
class _Columns:
    """Where each parameter's entries sit among the P + S*H columns of an influence matrix.

    Parameters in ``params`` order (U, W, b [, bh]), each flattened row-major, then the initial state's
    parts (h0 [, c0]) of one sequence.
    """

    def __init__(self, model):
        names = [k for k in ("U", "W", "b", "bh") if k in model.params]
        self.shapes = {k: model.params[k].shape for k in names}
        self.offset, col = {}, 0
        for k in names:
            self.offset[k] = col
            col += int(np.prod(self.shapes[k]))
        self.P = col
        for part in model.STATES:
            self.offset[f"{part}0"] = col
            col += model.hidden_size
        self.width = col

    def add_matrix(self, A, rows, key, values, param_rows):
        """(RTRL3) ``A[n, rows[k], key[param_rows[k], :]] += values[n, :]``: the Kronecker direct part.

        values : (N, n_in) floats, or (N,) integer token ids (a one-hot x_t).
        """
        n_in = self.shapes[key][1]
        base = self.offset[key] + param_rows * n_in  # (R,) first column of each parameter row
        if values.ndim == 1:  # token ids: x_t one-hot, a single 1 per row
            N = values.shape[0]
            A[np.arange(N)[:, None], rows[None, :], base[None, :] + values[:, None]] += 1
        else:
            cols = base[:, None] + np.arange(n_in)[None, :]  # (R, n_in)
            A[:, rows[:, None], cols] += values[:, None, :]

    def add_bias(self, A, rows, key, param_rows):
        """(RTRL3) ``A[n, rows[k], key[param_rows[k]]] += 1``."""
        A[:, rows, self.offset[key] + param_rows] += 1

    def split(self, row):
        """A ``(..., width)`` array's parameter columns as a dict of arrays shaped like the parameters."""
        lead = row.shape[:-1]
        out = {}
        for k, shape in self.shapes.items():
            o = self.offset[k]
            out[k] = row[..., o : o + int(np.prod(shape))].reshape(lead + shape)
        return out


def rtrl(model, X, Y, h0=None, mask=None, return_state=False, return_influence=False):
    """The loss and its exact gradient by real-time recurrent learning: forward in time, no history kept.

    Carries the influence matrices M_t = d(state_t)/d(theta, s_0) (module docstring, RTRL1-RTRL9) and adds
    each step's share of the gradient (RTRL2) as it goes. Memory is the same for every T; time is
    O(T N H^4) (the product W M_{t-1}), so it suits small H.

    Parameters
    ----------
    model : RNN, LSTM or GRU (one layer)
    X, Y, h0, mask, return_state : as ``model.loss_and_grad``
    return_influence : also return the final influence matrices: a dict keyed by state part ("h" [, "c"]),
        each a dict with the keys of U, W, b [, bh] (``(N, H) + param.shape``: d part_T[n] / d param) and of
        the initial state's parts "h0" [, "c0"] (``(N, H, H)``: d part_T[n] / d s0_part[n], per sequence)

    Returns
    -------
    ``(loss, grads)``, then ``state`` if ``return_state``, then ``influence`` if ``return_influence``;
    ``grads`` as ``model.loss_and_grad`` (keys of params plus "h0" [, "c0"]).
    """
    _check_model(model, "rtrl")
    if getattr(model, "proj_size", 0):
        raise ValueError(f"rtrl supports LSTMs without a projection; got proj_size={model.proj_size}")
    data = _Data(model, X, Y, h0, mask)
    T, N, H = data.T, data.N, model.hidden_size
    cols = _Columns(model)
    dt = model.dtype
    M = {}
    for part in model.STATES:  # (RTRL1) M_0 = [0 | I]: s_0 is its own parameter
        M[part] = np.zeros((N, H, cols.width), dtype=dt)
        M[part][:, np.arange(H), cols.offset[f"{part}0"] + np.arange(H)] = 1
    credit = np.zeros((N, cols.width), dtype=dt)  # sum_t cbar_t M^h_t, per sequence (RTRL2)
    gV = np.zeros_like(model.params["V"])
    gc = np.zeros_like(model.params["c"])
    step = {RNN: _rtrl_step_rnn, LSTM: _rtrl_step_lstm, GRU: _rtrl_step_gru}
    kind = next(cls for cls in step if isinstance(model, cls))
    step = step[kind]
    E, state, ws = 0.0, data.state0, Workspace()
    for a in range(0, T, RTRL_BLOCK):
        b = min(T, a + RTRL_BLOCK)
        Xb, is_ids, Yb, mb = data.block(a, b)
        L = b - a
        cache = model._forward(Xb, is_ids, state, ws)  # (S1, S2)
        E_b, dq, _ = model._loss_and_delta(model._logits(cache), Yb, mb)  # (O1-O4)
        E += E_b
        dq2 = dq.reshape(L * N, -1)
        h = cache["h"]
        gV += dq2.T @ h[1:].reshape(L * N, H)  # (O5)
        gc += dq2.sum(axis=0)  # (O5)
        cbar = (dq2 @ model.params["V"]).reshape(L, N, H)  # (RTRL2) cbar_t = dq_t V
        for s in range(L):
            M = step(model, cols, cache, s, Xb[s], M)  # (RTRL1)
            credit += np.matmul(cbar[s][:, None, :], M["h"])[:, 0, :]  # (RTRL2)
        state = tuple(cache[part][L].copy() for part in model.STATES)
    grads = cols.split(credit.sum(axis=0))  # (RTRL2) summed over the sequences that share theta
    grads["V"], grads["c"] = gV, gc
    grads = {k: grads[k] for k in model.params}
    for part in model.STATES:
        o = cols.offset[f"{part}0"]
        grads[f"{part}0"] = credit[:, o : o + H].copy()  # (RTRL2) dE/ds_0, per sequence (B4)
    out = (E, grads)
    if return_state:
        out += (model.public_state(state),)
    if return_influence:
        influence = {}
        for part in model.STATES:
            d = cols.split(M[part])
            for q in model.STATES:
                o = cols.offset[f"{q}0"]
                d[f"{q}0"] = M[part][:, :, o : o + H].copy()
            influence[part] = d
        out += (influence,)
    return out


def _direct(model, cols, A, rows, x, h_prev, which, param_rows=None):
    """(RTRL3) add the immediate influence of ``which`` ("x": U x_t + b; "h": W h_{t-1} [+ bh]) to A."""
    param_rows = rows if param_rows is None else param_rows
    matrix, vector, values = ("U", "b", x) if which == "x" else ("W", "bh", h_prev)
    cols.add_matrix(A, rows, matrix, values, param_rows)
    if vector in cols.shapes:  # models built with bias=False have neither b nor bh
        cols.add_bias(A, rows, vector, param_rows)


def _rtrl_step_rnn(model, cols, cache, s, x, M):
    z, h_prev, h_t = cache["gates"][s], cache["h"][s], cache["h"][s + 1]
    A = np.matmul(model.params["W"], M["h"])  # (RTRL3) W M^h_{t-1}   (N, H, width)
    rows = np.arange(model.hidden_size)
    _direct(model, cols, A, rows, x, h_prev, "x")  # (RTRL3) Abar_t
    _direct(model, cols, A, rows, x, h_prev, "h")
    fprime = 1 - h_t * h_t if model.nonlinearity == "tanh" else (z > 0).astype(model.dtype)
    A *= fprime[:, :, None]  # (RTRL4) M^h_t = f'(z_t) ⊙ A_t
    return {"h": A}


def _rtrl_step_lstm(model, cols, cache, s, x, M):
    H = model.hidden_size
    gates, h_prev = cache["gates"][s], cache["h"][s]
    i, f, g, o = (gates[:, k * H : (k + 1) * H][:, :, None] for k in range(4))
    c_prev, tc = cache["c"][s][:, :, None], cache["tanh_c"][s][:, :, None]
    A = np.matmul(model.params["W"], M["h"])  # (RTRL3) W M^h_{t-1}   (N, 4H, width)
    rows = np.arange(4 * H)
    _direct(model, cols, A, rows, x, h_prev, "x")  # (RTRL3) Abar_t
    _direct(model, cols, A, rows, x, h_prev, "h")
    A_i, A_f, A_g, A_o = (A[:, k * H : (k + 1) * H] for k in range(4))
    Mc = f * M["c"]  # (RTRL5) f ⊙ M^c_{t-1}
    Mc += (c_prev * f * (1 - f)) * A_f  # (RTRL5)
    Mc += (g * i * (1 - i)) * A_i  # (RTRL5)
    Mc += (i * (1 - g * g)) * A_g  # (RTRL5)
    Mh = (tc * o * (1 - o)) * A_o  # (RTRL6)
    Mh += (o * (1 - tc * tc)) * Mc  # (RTRL6)
    return {"h": Mh, "c": Mc}


def _rtrl_step_gru(model, cols, cache, s, x, M):
    H = model.hidden_size
    gates, h_prev, gh_n = cache["gates"][s], cache["h"][s], cache["gh_n"][s][:, :, None]
    r, z, n = (gates[:, k * H : (k + 1) * H][:, :, None] for k in range(3))
    B = np.matmul(model.params["W"], M["h"])  # (RTRL7) W M^h_{t-1}   (N, 3H, width)
    _direct(model, cols, B, np.arange(3 * H), x, h_prev, "h")  # (RTRL7) + Bbar_t: B_t
    _direct(model, cols, B, np.arange(2 * H), x, h_prev, "x")  # (RTRL7) C_r + B_r, C_z + B_z
    R = (r * (1 - r)) * B[:, :H]  # (RTRL8)
    Z = (z * (1 - z)) * B[:, H : 2 * H]  # (RTRL8)
    Nn = r * B[:, 2 * H :]  # (RTRL8) r ⊙ B_n
    Nn += gh_n * R  # (RTRL8) + gh_n ⊙ R_t
    n_rows = np.arange(2 * H, 3 * H)  # U's and b's rows of the n gate
    _direct(model, cols, Nn, np.arange(H), x, h_prev, "x", param_rows=n_rows)  # (RTRL8) + C_n
    Nn *= 1 - n * n  # (RTRL8)
    Mh = (1 - z) * Nn  # (RTRL9)
    Mh += (h_prev[:, :, None] - n) * Z  # (RTRL9)
    Mh += z * M["h"]  # (RTRL9)
    return {"h": Mh}
