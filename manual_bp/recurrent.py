"""One recurrent skeleton for RNN, LSTM and GRU: inputs, layers, directions, time loop, output layer, loss,
BPTT, truncation, JVP, the module's VJP.

The three models differ only in their cell. A cell maps the gate pre-activations of one step, ``G_t``, and the
previous state to the next state; the skeleton does everything around it. Inside, time is the leading axis
(time-major, torch's default; ``batch_first=True`` models take and return ``(N, T, ...)`` and are transposed
at the boundary), the batch is rows, and weights have torch's layout ``(n_out, n_in)`` with the gate blocks
stacked: ``U : (nG*H, D)``, ``W : (nG*H, H_out)``, ``b : (nG*H,)`` with nG = 1 (RNN), 4 (LSTM: i f g o) or
3 (GRU: r z n). H_out is H, or the LSTM's ``proj_size`` (lstm.py, (PR1-PR5)).

One layer, one direction
------------------------
Forward, for t = 1..T (step index s = t-1 in the arrays; states keep the initial state, ``S[0] = s_0``):

    (S1)  G_t = U x_t + b                for all t at once: X @ U.T + b, or the rows U.T[ids] + b (token ids)
    (S2)  (h_t, ...) = cell(G_t, W h_{t-1} [+ bh], h_{t-1}, ...)        the only work inside the time loop
    (O1)  o_t = softmax(V h_t + c)       (cross_entropy)   or   o_t = V h_t + c   (squared_error)
    (O2)  E_t = -log o_t[y_t]            (cross_entropy)   or   E_t = 1/2 ||y_t - o_t||^2
    (O3)  E = (1/N) sum_n sum_t m_tn E_tn      the mean over sequences of each sequence's summed loss, as the
                                               MLP's batch mean; m is the mask (all ones without one)

Both of torch's biases. torch computes ``U x_t + b_ih + W h_{t-1} + b_hh``; in the RNN and the LSTM only the
sum enters, so ``b = b_ih + b_hh`` (S1) is one parameter here, and dE/db_ih = dE/db_hh = dE/db. The GRU's
reset gate multiplies ``W_n h + bh_n`` alone, so it keeps ``b`` (b_ih) and ``bh`` (b_hh) apart. ``bias=False``
drops them (torch's ``bias=False``).

Backward (BPTT). With q_t = V h_t + c the output logits and ``dG_t = dE/dG_t`` the gate deltas:

    (O4)  dE/dq_t = m_t (o_t - y_t) / N        for both losses (softmax with cross-entropy; identity with SE)
    (O5)  dE/dV = sum_t dq_t^T h_t,   dE/dc = sum_t dq_t             one product over all T*N rows
    (B1)  dE/dh_t = dq_t V  +  dE/dh_t|_{step t+1}                    the two paths into h_t: E_t and h_{t+1}
    (B2)  dG_t, dE/dh_{t-1}, ... = cell_back(dE/dh_t, ..., cache_t)   each cell's own equations
    (B3)  dE/dU = sum_t dG_t^T x_t,  dE/db = sum_t dG_t,  dE/dW = sum_t dGh_t^T h_{t-1}  [dbh = sum_t dGh_t]
          after the loop, one product over all T*N rows (token ids: a scatter-add into U's columns);
          dGh = dG except in the GRU's n block, where the reset gate multiplies W_n h + bh_n.
    (B4)  dE/ds_0 = what (B2) returns at t = 1                        ``grads["h0"]`` (and ``"c0"``)

Truncated BPTT, ``truncate=k`` (WildML's ``bptt_truncate``): the gradient of each E_t flows back through the
steps j = t, t-1, ..., max(1, t-k) (k+1 steps, each adding its share to (B3)) and reaches the state
s_{t-k-1} that feeds the earliest of them, no further. So dE/ds_0 gets E_t's share only when t-k <= 1.
``k >= T-1`` is full BPTT (the same code path, so exactly the same numbers).

    (TR)  Vectorised over t by lag: at lag l = 0..k every E_t with t-l >= 1 sits at state j = t-l; all of
          them step back together (one cell_back over (T-l)*N rows), add their dG_j, and the share that
          reaches s_0 goes to dE/ds_0. k+1 stacked steps instead of T*(k+1) small ones.

Vanishing gradient (``vanishing_gradients``): E_T alone (the batch mean of the last step's loss, unmasked)
stepped back with (B2): ``||dE_T/ds_k||`` (Frobenius norm over the batch, a vector for N = 1) for k = 0..T,
where s_k is the state carried from step k to step k+1: h_k, and for the LSTM the pair (h_k, c_k). So the
LSTM's dE_T/dc_k holds h_k fixed (the path through c_{k+1}, 0 at k = T), and dE_T/dh_k is the total over
both paths out of h_k: exactly what (B2) carries, what ``grads["h0"], grads["c0"]`` are at k = 0, and what
``retain_grad`` shows on the state tensors of torch's modules.

Forward mode (``jvp``) pushes a tangent of the parameters (and of the initial state) through time:

    (J1)  dGx_t = U' x_t + b',   dGw_t = W' h_{t-1} [+ bh']          one product each, hoisted out of the loop
    (J2)  (h'_t, ...) = cell_jvp(dGx_t, dGw_t + W h'_{t-1}, ...)       tangent of (S2)
    (J3)  dE = sum_t <dE/dq_t, V h'_t + V' h_t + c'>                  the loss's own local derivative (O4)

Layers and directions (torch's ``num_layers``, ``bidirectional``)
-----------------------------------------------------------------
Layer l = 1..L has one cell per direction d (→ forward; ← reverse when bidirectional, D_dir = 2), each with
its own U, W, b[, bh][, Wr] (names below) and its own initial state. With the dropout mask δ^l (DO1):

    (ST1)  y^l_t = [h^{l,→}_t ; h^{l,←}_t]      the layer's output (N, D_dir*H_out); one direction: h^{l,→}_t
    (ST2)  x^1_t = x_t,   x^{l+1}_t = δ^l_t ⊙ y^l_t          each layer reads the one below, both directions
    (ST3)  out_t = y^L_t (what the head (O1) reads);  h_n[l*D_dir + d] = the final state of cell (l, d)
    (ST4)  dE/dy^L_t = dq_t V (the head's (B1) path), or the given ``d_out`` (VJ1)
    (ST5)  dE/dx^{l,d}_t = dG^{l,d}_t U^{l,d}   (the input's share of (S1); the gate blocks of dG only)
    (ST6)  dE/dy^{l-1}_t = δ^{l-1}_t ⊙ sum_d dE/dx^{l,d}_t    then BPTT (B1-B4) of layer l-1; L down to 1
    (ST7)  forward mode: the tangent x'^{l+1}_t = δ^l_t ⊙ y'^l_t enters (J1) as dGx_t = U' x_t + U x'_t + b'

Each cell's BPTT is (B1-B4) with its slice of dE/dy^l_t as the output path; (B3) uses the layer's own input
x^l. The reverse direction is the same cell run on the time-reversed sequence:

    (BD1)  h^{l,←}_t = cell(x^l_t, h^{l,←}_{t+1}),  h^{l,←}_{T+1} = its initial state: the forward code on
           x̃_s = x_{T+1-s}, whose state after step s is h^{l,←}_{T+1-s}; its outputs are reversed back
    (BD2)  backward: dE/dy^l reversed the same way in, the cell's dE/dx (ST5) reversed back out
    (BD3)  its final state (h_n[l*2 + 1]) is the state after its last step, at t = 1

Packed sequences (``lengths``, torch's ``pack_padded_sequence(..., enforce_sorted=False)``; ``out`` keeps all
T steps as ``pad_packed_sequence(..., total_length=T)``). Sequence n has L_n steps, 1 <= L_n <= T:

    (PK1)  at a step t > L_n the state stays: h_t = h_{t-1} (c_t = c_{t-1}); y_t = 0; so h_n = h_{L_n}
    (PK2)  backward: at t > L_n the state's gradient passes unchanged, dG_t = 0, and dE/dy_t is dropped
           (y_t is the constant 0); forward mode: the tangent of the state passes unchanged
    (PK3)  the reverse direction reverses each sequence within its own length: x̃_{s,n} = x_{L_n+1-s,n} for
           s <= L_n, so it starts at t = L_n from its initial state and ends at t = 1
    (PK4)  the loss (O3) drops steps t > L_n: m_tn <- m_tn [t <= L_n]

Dropout between layers (torch's ``dropout=p``; in training mode only, ``model.train()``/``model.eval()``):

    (DO1)  δ^l_t = keep^l_t / (1 - p),  keep^l ~ Bernoulli(1 - p) per element of y^l (T, N, D_dir*H_out), for
           l = 1..L-1: never on the input x, never on the top output (torch's placement). p = 1: δ = 0.
    (DO2)  backward and forward mode: the same δ multiplies dE/dy (ST6) and the tangent (ST7)

The masks come from the model's own generator (seeded by ``seed``; each call in training mode draws new ones,
``draw_dropout_masks``), or are given as ``dropout_masks=[keep^1, ..., keep^{L-1}]`` (booleans in out's
layout): given masks are applied as given (with the 1/(1-p) scaling) in either mode, so the same masks give
the same numbers every time. ``model.eval()`` (or ``dropout=0``, or one layer) runs without dropout.

The recurrent module alone (``output_size=None``, or ``recurrent``/``vjp`` of any model), as torch's module:

    (VJ1)  v = <out, d_out> + <h_n, d_hn> [+ <c_n, d_cn>]: dv/dy^L = d_out (ST4); d_hn enters each cell's
           (B1) at its final step as dE/ds_T (at its own end, PK1)
    (VJ2)  dv/dx_t = sum_d dE/dx^{1,d}_t (ST5 at layer 1);  dv/ds_0 per cell by (B4)

Truncation with layers (one direction): E_t's window is steps max(1, t-k)..t of every layer, each layer's
state at t-k-1 held fixed (torch: the stack run over the window from detached states).

    (TR2)  (TR) per layer, with the chains kept apart by lag: the input gradient of the lag-l chains (ST5)
           enters the layer below at the same lag l and the same step, where it has k-l steps left.

Truncation is refused for bidirectional models (the reverse direction reaches every E_t from the sequence's
end, so a window back from t is not the graph of anything). ``vanishing_gradients`` works for one-direction
stacks (s_k is then every layer's state) and is refused for bidirectional ones.

Parameter names
---------------
One pattern: the base name, then ``_l{l}`` for layer l >= 1 (0-based, as torch), then ``_reverse`` for the
reverse direction. Layer 0's forward cell keeps the bare names, so a one-layer model has U, W, b[, bh], V, c.

    =========  ======================  ====================================================  ============
    ours       shape                   torch                                                 when
    =========  ======================  ====================================================  ============
    U{sfx}     (nG*H, D_l)             weight_ih_l{l}{_reverse}                              always
    W{sfx}     (nG*H, H_out)           weight_hh_l{l}{_reverse}                              always
    b{sfx}     (nG*H,)                 bias_ih_l{l}{_reverse} + bias_hh_l{l}{_reverse}       bias=True
                                       (RNN, LSTM: their sum); bias_ih_l{l}{_reverse} (GRU)
    bh{sfx}    (nG*H,)                 bias_hh_l{l}{_reverse}                                GRU, bias
    Wr{sfx}    (H_out, H)              weight_hr_l{l}{_reverse}                              LSTM, proj
    V          (K, D_dir*H_out)        head.weight (an ``nn.Linear``)                        output_size
    c          (K,)                    head.bias                                             output_size
    =========  ======================  ====================================================  ============

with ``sfx = ("" if l == 0 else f"_l{l}") + ("_reverse" if reverse else "")``, D_0 = input_size and
D_l = D_dir*H_out above. E.g. a 2-layer bidirectional LSTM: U, W, b, U_reverse, ..., U_l1, W_l1_reverse, ...

States. A model with a head and one layer in one direction keeps the historical layout: ``h0 : (N, H)`` (the
LSTM's ``(h0, c0)``), ``grads["h0"]`` and the returned state alike. Every other model (and ``recurrent``,
``vjp`` and the bare module's ``jvp`` of any model) uses torch's: ``(D_dir*num_layers, N, H_out)`` (the LSTM's
c: ``(D_dir*num_layers, N, H)``), row l*D_dir + d for layer l, direction d. Every method also accepts torch's
layout for a one-layer model; ``to_torch_state``/``from_torch_state`` convert.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._validation import (
    as_float_array,
    check_choice,
    check_dtype,
    check_finite,
    check_int,
    check_param_dict,
    check_seed,
    check_shape,
)
from .losses import log_softmax

RECURRENT_LOSSES = ("cross_entropy", "squared_error")


def rows(arr, start, stop):
    """Steps ``start:stop`` of a time-major array ``(T, N, X)`` as rows ``((stop-start)*N, X)`` (a view)."""
    return arr[start:stop].reshape(-1, arr.shape[-1])


def _check_bool(name, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {type(value).__name__} {value!r}")
    return bool(value)


def _check_probability(name, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1]; got {type(value).__name__} {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1]; got {value}")
    return value


class Workspace:
    """Reusable arrays for repeated calls of ``loss_and_grad`` / ``loss`` (pass ``workspace=``).

    Made anew on every call, the large per-call arrays of a recurrent pass (the gate buffer, the states, the
    deltas) go back to the OS when freed (glibc trims the heap) and are faulted in again on the next call: up
    to a third of a training step with 2 BLAS threads (benchmarks/). A workspace keeps them from call to call.
    It is explicit: a model holds nothing between calls, and whoever passes a workspace owns its memory
    (``fit`` and ``fit_stream`` make one per run and drop it at the end). Nothing in it is ever returned to
    the caller. One workspace serves one thread at a time; it pickles and deep-copies as an empty one.
    """

    def __init__(self):
        self.arrays = {}

    def empty(self, name, shape, dtype) -> np.ndarray:
        """The array ``name`` if it has this shape and dtype, else a new one (kept for the next call)."""
        buf = self.arrays.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self.arrays[name] = np.empty(shape, dtype=dtype)
        return buf

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def clear(self) -> None:
        self.arrays.clear()

    def __getstate__(self):
        return {"arrays": {}}

    def __repr__(self):
        return f"Workspace({len(self.arrays)} arrays, {self.nbytes / 2**20:.1f} MiB)"


class _Call:
    """One call's validated arguments, time-major: X, is_ids, Y, the initial state's parts, the loss mask (in
    the model's dtype, (PK4) included), ``live`` (T, N) booleans (None without lengths), the per-sequence
    reversal index (PK3), the scaled dropout masks (DO1) or None."""

    __slots__ = ("X", "is_ids", "Y", "state0", "mask", "lengths", "live", "rev", "drop", "masks_given")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


class Recurrent:
    """The shared skeleton; ``RNN``, ``LSTM`` and ``GRU`` add their cell.

    A cell class sets

    - ``GATES``: how many H-blocks are stacked in U, W, b (1, 4, 3);
    - ``STATES``: the state's parts, ``("h",)`` or ``("h", "c")``; "h" feeds the output layer;
    - ``HIDDEN_BIAS``: True when the cell has a bias ``bh`` inside its hidden projection (the GRU);

    and writes four methods, each one time step (``s`` is the 0-based step, from state s to state s+1):

    - ``_step(s, cache, work)``: (S2), reading ``cache["gates"][s] = U x_t + b`` and writing the states at
      s+1; it completes the gate pre-activations in place and leaves there what backward reads (the RNN its
      z_t, the LSTM and GRU their gate activations);
    - ``_step_back(start, stop, dstate, cache, dG)``: (B2) for the steps ``start:stop`` stacked as rows;
      ``dstate`` holds dE/d(state at s+1) for each part, ``(M, H)`` with M = (stop-start)*N; writes the gate
      deltas into ``dG (M, nG*H)`` (the projected LSTM also the projection's delta, (PR2)) and returns
      dE/d(state at s) for each part;
    - ``_step_jvp(s, dgx, dgw, dprev, cache, dnext)``: (J2);
    - ``_hidden_deltas(dG, cache)``: dGh of (B3) from dG (default: dG itself).
    - ``_alloc_cache(cache, T, N, workspace)``: any extra per-step arrays backward reads (LSTM: tanh(c_t);
      GRU: gh_n), made with ``self._empty(shape, workspace, name)``.

    The cache of a forward pass holds ``X``, ``is_ids``, ``gates (T, N, nG*H)``, ``W_T`` (W transposed,
    contiguous), ``live`` (None, or the (T, N) steps inside each sequence (PK1)), and each state part by its
    name, ``cache["h"]`` (and ``cache["c"]``), ``(T+1, N, H)`` with the initial state at index 0. Inside the
    package the state is always a tuple of parts in ``STATES`` order; ``state_parts`` and ``public_state``
    convert at the public boundary, where the RNN and GRU take and return one array and the LSTM a pair
    ``(h, c)``.

    Layers and directions: every cell method works on one layer-direction. A one-layer, one-direction model is
    its own cell; otherwise ``_cell(l, d)`` gives a cell of the same class holding that layer-direction's
    parameters under the bare names (U, W, ...) and its input size, and the skeleton's ``_run``/``_run_back``/
    ``_run_jvp`` loop over layers and directions (ST1-ST7, BD1-BD3, PK1-PK4, DO1-DO2).
    """

    GATES = 1
    STATES = ("h",)
    HIDDEN_BIAS = False
    #: only the LSTM has a projection (``proj_size``)
    PROJECTION = False
    #: time-major: X (T, N, ...) and Y (T, N[, K]) index sequences along axis 1 (``batch_first`` models: see
    #: ``batch_axis``)
    BATCH_AXIS = 1
    #: a cell's prefix for its workspace arrays (each layer-direction keeps its own)
    _ws_prefix = ""

    def __init__(self, input_size, hidden_size, output_size=None, loss="cross_entropy", dtype=np.float64,
                 seed=None, *, num_layers=1, bidirectional=False, batch_first=False, bias=True, dropout=0.0,
                 proj_size=0):
        self.input_size = check_int("input_size", input_size, minimum=1)
        self.hidden_size = check_int("hidden_size", hidden_size, minimum=1)
        self.output_size = None if output_size is None else check_int("output_size", output_size, minimum=1)
        self.loss_name = check_choice("loss", loss, RECURRENT_LOSSES)
        self.dtype = check_dtype(dtype)
        self.seed = check_seed(seed)
        self.num_layers = check_int("num_layers", num_layers, minimum=1)
        self.bidirectional = _check_bool("bidirectional", bidirectional)
        self.batch_first = _check_bool("batch_first", batch_first)
        self.bias = _check_bool("bias", bias)
        self.dropout = _check_probability("dropout", dropout)
        self.proj_size = check_int("proj_size", proj_size, minimum=0)
        if self.proj_size and not self.PROJECTION:
            raise ValueError(f"proj_size is an LSTM option; got proj_size={self.proj_size} for "
                             f"{type(self).__name__}")
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size={self.hidden_size} (as torch); "
                             f"got {self.proj_size}")
        #: torch's mode flag: dropout (DO1) is drawn only in training mode; ``train()``/``eval()`` set it
        self.training = True
        self._dropout_rng = np.random.default_rng(None if self.seed is None else [self.seed, 1])
        self.params = self._init_params(np.random.default_rng(self.seed))

    # ------------------------------------------------------------------ set-up
    #: the options beyond the historical ones and their defaults: ``config()`` lists those that differ
    OPTIONS = {"num_layers": 1, "bidirectional": False, "batch_first": False, "bias": True, "dropout": 0.0}

    def config(self) -> dict:
        """The constructor arguments, enough to rebuild the (untrained) model: ``type(m)(**m.config())``.

        The options num_layers, bidirectional, batch_first, bias, dropout (and the LSTM's proj_size) appear
        when they differ from their defaults, so that a default model's config is what it always was.
        """
        out = {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "output_size": self.output_size,
            "loss": self.loss_name,
            "dtype": self.dtype.name,
            "seed": self.seed,
        }
        for name, default in self.OPTIONS.items():
            if getattr(self, name) != default:
                out[name] = getattr(self, name)
        return out

    def train(self, mode=True):
        """Training mode (torch's ``module.train()``): dropout between layers is drawn (DO1). Returns self."""
        self.training = _check_bool("mode", mode)
        return self

    def eval(self):
        """Evaluation mode (torch's ``module.eval()``): no dropout unless masks are given. Returns self."""
        return self.train(False)

    @property
    def num_directions(self) -> int:
        """D_dir: 2 for a bidirectional model, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def output_features(self) -> int:
        """The width of the recurrent module's output ``out``: D_dir * H_out."""
        return self.num_directions * self._hout

    @property
    def batch_axis(self) -> int:
        """The axis of X, Y and the mask that indexes sequences: 0 for ``batch_first``, else 1."""
        return 0 if self.batch_first else 1

    @property
    def _hout(self) -> int:
        return self.proj_size or self.hidden_size

    @property
    def _cells(self) -> int:
        return self.num_layers * self.num_directions

    def _part_size(self, part) -> int:
        """The width of a state part: H_out for h, H for the LSTM's c."""
        return self._hout if part == "h" else self.hidden_size

    @property
    def _delta_width(self) -> int:
        """Columns of a step's deltas dG: the gates, and the projection's delta (PR2) when there is one."""
        return self.GATES * self.hidden_size + (self.proj_size if self.PROJECTION else 0)

    @staticmethod
    def _suffix(l, d) -> str:
        return ("" if l == 0 else f"_l{l}") + ("_reverse" if d else "")

    def _cell_shapes(self, l) -> dict:
        """The parameters of one cell of layer l under their bare names, with shapes."""
        GH, H = self.GATES * self.hidden_size, self.hidden_size
        d_in = self.input_size if l == 0 else self.output_features
        shapes = {"U": (GH, d_in), "W": (GH, self._hout)}
        if self.bias:
            shapes["b"] = (GH,)
            if self.HIDDEN_BIAS:
                shapes["bh"] = (GH,)
        if self.proj_size:
            shapes["Wr"] = (self.proj_size, H)
        return shapes

    def param_names(self) -> dict:
        """``{our name: torch's name}`` for every parameter (the module docstring's table).

        For the RNN and LSTM our ``b`` stands for torch's two biases; the name given is ``bias_ih``, and
        ``torch_grads`` gives both. The head's are ``"head.weight"``, ``"head.bias"``.
        """
        torch_base = {"U": "weight_ih", "W": "weight_hh", "b": "bias_ih", "bh": "bias_hh", "Wr": "weight_hr"}
        out = {}
        for l in range(self.num_layers):
            for d in range(self.num_directions):
                for base in self._cell_shapes(l):
                    out[base + self._suffix(l, d)] = f"{torch_base[base]}_l{l}" + ("_reverse" if d else "")
        if self.output_size is not None:
            out["V"], out["c"] = "head.weight", "head.bias"
        return out

    def _init_params(self, rng) -> dict:
        """torch's default for ``nn.RNN/LSTM/GRU``: all ~ U(-1/sqrt(H), 1/sqrt(H)); the head as ``nn.Linear``,
        U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = D_dir*H_out.

        Biases are non-zero from the start, so every bias path is exercised.
        """
        bound = 1.0 / np.sqrt(self.hidden_size)
        params = {}
        for l in range(self.num_layers):
            for d in range(self.num_directions):
                for base, shape in self._cell_shapes(l).items():
                    params[base + self._suffix(l, d)] = rng.uniform(-bound, bound, shape).astype(self.dtype)
        if self.output_size is not None:
            F, K = self.output_features, self.output_size
            head = 1.0 / np.sqrt(F)
            params["V"] = rng.uniform(-head, head, (K, F)).astype(self.dtype)
            params["c"] = rng.uniform(-head, head, (K,)).astype(self.dtype)
        return params

    def _cell(self, l, d):
        """The single-layer, one-direction model of layer l, direction d (0 forward, 1 reverse).

        A one-layer, one-direction model is its own cell. Otherwise: a new object of the same class sharing
        this model's settings, with that layer-direction's parameters under the bare names and its input
        size; made per call, so it always reads the current ``params``.
        """
        if self._cells == 1:
            return self
        cell = object.__new__(type(self))
        cell.__dict__.update(self.__dict__)
        sfx = self._suffix(l, d)
        cell.params = {base: self.params[base + sfx] for base in self._cell_shapes(l)}
        cell.input_size = self.input_size if l == 0 else self.output_features
        cell.num_layers, cell.bidirectional, cell.output_size = 1, False, None
        cell._ws_prefix = f"l{l}d{d}/"
        return cell

    # ------------------------------------------------------------------ state at the public boundary
    @property
    def _flat_state(self) -> bool:
        """True when states are ``(N, H)`` (a model with a head, one layer, one direction)."""
        return self.output_size is not None and self._cells == 1

    def public_state(self, parts: tuple):
        """The package's tuple of state parts in the form users pass as ``h0``: an array, or ``(h, c)``."""
        return parts[0] if len(self.STATES) == 1 else tuple(parts)

    def state_parts(self, h0, N=None) -> tuple:
        """``h0`` in any form ``loss_and_grad`` accepts, validated, as the tuple of parts (None -> zeros).

        ``N`` is the batch size; when omitted it is read from ``h0`` itself.
        """
        if N is None:
            first = h0[0] if isinstance(h0, (tuple, list)) and len(self.STATES) > 1 else h0
            shape = np.shape(first) if first is not None else ()
            N = shape[1] if len(shape) == 3 else (shape[0] if shape else 1)
        return self._check_h0(h0, N)

    def to_torch_state(self, state, N=None):
        """A state in any accepted form as torch's ``(D_dir*num_layers, N, H_out)`` (LSTM: ``(h, c)``)."""
        parts = self.state_parts(state, N)
        return self.public_state(tuple(p[None] if p.ndim == 2 else p for p in parts))

    def from_torch_state(self, state, N=None):
        """torch's ``(D_dir*num_layers, N, H_out)`` state (LSTM: ``(h, c)``) in this model's own layout."""
        return self.public_state(self.state_parts(state, N))

    def _torch_parts(self, parts) -> tuple:
        """Internal parts as ``(D_dir*num_layers, N, size)`` arrays (flat parts get a leading axis)."""
        return tuple(p[None] if p.ndim == 2 else p for p in parts)

    def _cell_state(self, parts, k) -> tuple:
        """Cell k's (= l*D_dir + d) share of the parts: ``(N, size)`` each."""
        return tuple(p if p.ndim == 2 else p[k] for p in parts)

    # ------------------------------------------------------------------ validation
    def _time_major(self, arr):
        """A batch-first array ``(N, T, ...)`` as time-major ``(T, N, ...)`` (C-contiguous); else itself."""
        return np.ascontiguousarray(np.swapaxes(arr, 0, 1)) if self.batch_first else arr

    def _public_layout(self, arr):
        """A time-major array in the model's layout (batch-first models: ``(N, T, ...)``)."""
        return np.swapaxes(arr, 0, 1) if self.batch_first else arr

    def _axes(self, T=None, N=None):
        """The leading dimensions' (label, size) in the model's layout."""
        return (("N", N), ("T", T)) if self.batch_first else (("T", T), ("N", N))

    def _check_X(self, X):
        """``(X, is_ids)``, time-major: integer token ids ``(T, N)`` in [0, D), or floats ``(T, N, D)``
        (``(N, T[, D])`` for batch-first models) in the dtype."""
        D = self.input_size
        arr = np.asarray(X)
        lead = "(N, T" if self.batch_first else "(T, N"
        if arr.dtype != np.bool_ and np.issubdtype(arr.dtype, np.integer):
            if arr.ndim != 2:
                raise ValueError(
                    f"X of integer token ids must have shape {lead}); got {arr.shape} "
                    f"(float inputs have shape {lead}, D={D}))"
                )
            check_shape("X", arr, self._axes())
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi >= D:
                bad = lo if lo < 0 else hi
                where = tuple(int(i) for i in np.argwhere(arr == bad)[0])
                raise ValueError(f"X token ids must lie in [0, D={D}); got {bad} at index {where}")
            return self._time_major(arr.astype(np.intp, copy=False)), True
        if arr.ndim != 3 and arr.dtype.kind == "f":
            raise ValueError(
                f"X must have shape {lead}, D={D}) (or integer token ids {lead})); got {arr.shape}"
            )
        arr = as_float_array("X", arr, self.dtype, self._axes() + (("D", D),))
        return self._time_major(arr), False

    def _check_mask(self, mask, T, N):
        """None, or booleans ``(T, N)`` (batch-first: ``(N, T)``); returned time-major (1 keeps a step's loss,
        0 drops it)."""
        if mask is None:
            return None
        arr = np.asarray(mask)
        lead = "(N, T)" if self.batch_first else "(T, N)"
        if arr.dtype != np.bool_:
            raise TypeError(f"mask must be a boolean array {lead}; got dtype {arr.dtype}")
        check_shape("mask", arr, self._axes(T, N))
        return self._time_major(arr)

    def _check_Y(self, Y, T, N, mask):
        """Labels ``(T, N)`` in [0, K) (cross_entropy) or floats ``(T, N, K)`` (batch-first: N first);
        masked-out entries ignored (``mask`` is time-major). Returned time-major."""
        K = self.output_size
        arr = np.asarray(Y)
        keep = np.ones((T, N), dtype=bool) if mask is None else mask
        keep_public = self._public_layout(keep)
        if self.loss_name == "cross_entropy":
            if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
                dims = "N={N}, T={T}" if self.batch_first else "T={T}, N={N}"
                raise TypeError(
                    f"Y must hold integer class labels ({dims.format(T=T, N=N)}) for cross_entropy; "
                    f"got dtype {arr.dtype}"
                )
            check_shape("Y", arr, self._axes(T, N))
            live = arr[keep_public]
            if live.size and (live.min() < 0 or live.max() >= K):
                bad = int(live.min()) if live.min() < 0 else int(live.max())
                where = tuple(int(i) for i in np.argwhere((arr == bad) & keep_public)[0])
                raise ValueError(f"Y labels must lie in [0, K={K}); got {bad} at index {where}")
            return self._time_major(np.where(keep_public, arr, 0).astype(np.intp))
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            lead = "(N, T, K)" if self.batch_first else "(T, N, K)"
            raise TypeError(f"Y must be a numeric array {lead} for squared_error; got dtype {arr.dtype}")
        check_shape("Y", arr, self._axes(T, N) + (("K", K),))
        arr = arr.astype(self.dtype, copy=False)
        check_finite("Y", np.where(keep_public[..., None], arr, 0))
        arr = self._time_major(arr)
        return arr if mask is None else np.where(keep[..., None], arr, 0).astype(self.dtype, copy=False)

    def _check_h0(self, h0, N, name="h0"):
        """The initial state as a tuple of parts, one per ``STATES`` (None means zeros): ``(N, size)`` arrays
        for a flat-state model, else torch's ``(D_dir*num_layers, N, size)``; a one-layer, one-direction model
        takes either form."""
        flat = self._flat_state
        dims = "(N, H)" if flat else "(D*num_layers, N, H)"
        if len(self.STATES) == 1:
            parts = (h0,)
        else:
            if h0 is None:
                parts = (None,) * len(self.STATES)
            elif not isinstance(h0, (tuple, list)) or len(h0) != len(self.STATES):
                names = ", ".join(f"{p}0" if name == "h0" else f"d_{p}n" for p in self.STATES)
                got = type(h0).__name__
                if isinstance(h0, (tuple, list)):
                    got += f" of length {len(h0)}"
                raise TypeError(
                    f"{name} must be None or a tuple ({names}) of {dims} arrays or None; got {got}")
            else:
                parts = tuple(h0)
        out = []
        for part, value in zip(self.STATES, parts):
            size = self._part_size(part)
            label = "H_out" if (part == "h" and self.proj_size) else "H"
            pname = f"{part}0" if name == "h0" else f"d_{part}n"
            if value is None:
                shape = (N, size) if flat else (self._cells, N, size)
                out.append(np.zeros(shape, dtype=self.dtype))
            elif self._cells == 1 and np.ndim(value) != 3:  # (N, size): any one-layer, one-direction model
                arr = as_float_array(pname, value, self.dtype, (("N", N), (label, size)))
                out.append(arr if flat else arr[None])
            else:
                arr = as_float_array(pname, value, self.dtype,
                                     (("D*num_layers", self._cells), ("N", N), (label, size)))
                out.append(arr[0] if flat else arr)
        return tuple(out)

    def _check_lengths(self, lengths, T, N):
        """None, or the sequences' lengths ``(N,)``, integers in [1, T] in any order (PK1-PK4)."""
        if lengths is None:
            return None
        arr = np.asarray(lengths)
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"lengths must hold integers (N={N},); got dtype {arr.dtype}")
        check_shape("lengths", arr, (("N", N),))
        if arr.min() < 1 or arr.max() > T:
            bad = int(arr.min()) if arr.min() < 1 else int(arr.max())
            where = int(np.argwhere(arr == bad)[0][0])
            raise ValueError(f"lengths must lie in [1, T={T}]; got {bad} at index {where}")
        return arr.astype(np.intp)

    def _dropout_scale(self) -> float:
        """(DO1) 1/(1-p), or 0 for p = 1 (every unit dropped)."""
        return 0.0 if self.dropout == 1.0 else 1.0 / (1.0 - self.dropout)

    def _check_dropout_masks(self, masks, T, N):
        """None, or the L-1 masks ``keep^l`` (T, N, D_dir*H_out) (batch-first: N first): booleans or 0/1
        numbers; returned time-major as booleans."""
        if masks is None:
            return None
        L = self.num_layers
        if not isinstance(masks, (list, tuple)) or len(masks) != L - 1:
            got = type(masks).__name__
            if isinstance(masks, (list, tuple)):
                got += f" of length {len(masks)}"
            raise TypeError(f"dropout_masks must be a list of num_layers-1={L - 1} arrays (one per gap "
                            f"between layers); got {got}")
        shape = self._axes(T, N) + (("D*H_out", self.output_features),)
        out = []
        for l, m in enumerate(masks):
            arr = np.asarray(m)
            name = f"dropout_masks[{l}]"
            if arr.dtype != np.bool_:
                if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
                    raise TypeError(f"{name} must hold booleans or 0/1; got dtype {arr.dtype}")
                check_shape(name, arr, shape)
                if not np.isin(arr, (0, 1)).all():
                    bad = arr[~np.isin(arr, (0, 1))].flat[0]
                    raise ValueError(f"{name} must hold booleans or 0/1; got {bad}")
                arr = arr != 0
            check_shape(name, arr, shape)
            out.append(self._time_major(arr))
        return out

    def draw_dropout_masks(self, T, N) -> list:
        """num_layers-1 keep masks (DO1) drawn from the model's generator, in out's layout ``(T, N, D*H_out)``
        (batch-first: ``(N, T, D*H_out)``): pass them as ``dropout_masks=`` to repeat a call exactly."""
        T, N = check_int("T", T, minimum=1), check_int("N", N, minimum=1)
        shape = (N, T, self.output_features) if self.batch_first else (T, N, self.output_features)
        return [self._dropout_rng.random(shape) >= self.dropout for _ in range(self.num_layers - 1)]

    def _check_call(self, X, Y=None, h0=None, mask=None, lengths=None, dropout_masks=None, need_Y=True):
        """Every argument checked (before any work), time-major; dropout masks not yet drawn (``_draw``)."""
        X, is_ids = self._check_X(X)
        T, N = X.shape[:2]
        state0 = self._check_h0(h0, N)
        mask = self._check_mask(mask, T, N)
        lengths = self._check_lengths(lengths, T, N)
        live = rev = None
        if lengths is not None:
            t = np.arange(T)[:, None]
            live = t < lengths[None, :]  # (PK1) step t+1 <= L_n
            rev = np.where(live, lengths[None, :] - 1 - t, t)  # (PK3) within each sequence's own length
        keep = mask if live is None else (live if mask is None else mask & live)  # (PK4)
        if need_Y:
            Y = self._check_Y(Y, T, N, keep)
        drop = self._check_dropout_masks(dropout_masks, T, N)
        return _Call(X=X, is_ids=is_ids, Y=Y, state0=state0, lengths=lengths, live=live, rev=rev,
                     mask=None if keep is None else keep.astype(self.dtype), drop=drop,
                     masks_given=drop is not None)

    def _draw(self, call):
        """(DO1) the dropout of this call, scaled: the given masks, or masks drawn in training mode."""
        if self.num_layers == 1:
            call.drop = None
            return call
        keep = call.drop
        if keep is None and self.training and self.dropout > 0:
            T, N = call.X.shape[:2]
            keep = [self._time_major(m) for m in self.draw_dropout_masks(T, N)]
        if keep is not None:
            scale = self.dtype.type(self._dropout_scale())
            call.drop = [k.astype(self.dtype) * scale for k in keep]
        return call

    def _check_truncate(self, truncate):
        if truncate is None:
            return None
        truncate = check_int("truncate", truncate, minimum=0)
        if self.bidirectional:
            raise ValueError(
                f"truncate applies to one-direction models; got truncate={truncate} for a bidirectional "
                "model (its reverse direction reaches every E_t from the sequence's end: no window back "
                "from t)"
            )
        return truncate

    @staticmethod
    def _check_workspace(workspace):
        if workspace is not None and not isinstance(workspace, Workspace):
            raise TypeError(
                f"workspace must be a manual_bp.Workspace or None; got {type(workspace).__name__}"
            )
        return workspace

    def _need_head(self, what):
        if self.output_size is None:
            raise TypeError(
                f"{what} needs an output layer: this {type(self).__name__} has output_size=None (the bare "
                "recurrent module, as torch's); use forward/vjp/jvp(X, tangents), or build it with "
                "output_size=K"
            )

    def _empty(self, shape, workspace=None, name=None) -> np.ndarray:
        """``np.empty(shape)`` in the model's dtype, or the workspace's array ``name`` (see ``Workspace``)."""
        if workspace is None:
            return np.empty(shape, dtype=self.dtype)
        return workspace.empty(self._ws_prefix + name, shape, self.dtype)

    # ------------------------------------------------------------------ one cell, forward
    def _project(self, X, is_ids, U, b, workspace=None):
        """(S1) ``U x_t + b`` for every step at once: ``(T, N, nG*H)``, a buffer the loop fills in place."""
        if is_ids:
            G = np.ascontiguousarray(U.T)[X]  # (T, N, nG*H) row gather: column x of U is U @ onehot(x)
            if b is not None:
                G += b
            return G
        T, N, D = X.shape
        out = self._empty((T * N, U.shape[0]), workspace, "gates")
        G = np.matmul(X.reshape(T * N, D), U.T, out=out).reshape(T, N, -1)  # (T, N, nG*H)
        if b is not None:
            G += b
        return G

    def _forward(self, X, is_ids, state0, workspace=None, live=None):
        """The cache of a forward pass of this cell (see the class docstring): ``X``, ``gates``, each state.

        ``workspace``: reuse its arrays for the cache (see ``Workspace``). ``live`` (T, N) booleans: the steps
        inside each sequence; past its end a sequence's state stays (PK1).
        """
        T, N = X.shape[:2]
        gates = self._project(X, is_ids, self.params["U"], self.params.get("b"), workspace)
        cache = {"X": X, "is_ids": is_ids, "gates": gates, "live": live}
        # W^T (H, nG*H) as a contiguous copy, once per pass: the step's (N, H) @ (H, nG*H) product runs
        # 1.4-1.9x faster in OpenBLAS from a row-major W^T than from the transposed view of W (small N).
        cache["W_T"] = np.ascontiguousarray(self.params["W"].T)
        for part, s0 in zip(self.STATES, state0):
            states = self._empty((T + 1, N, self._part_size(part)), workspace, part)
            states[0] = s0
            cache[part] = states
        self._alloc_cache(cache, T, N, workspace)
        work = np.empty((N, self.GATES * self.hidden_size), dtype=self.dtype)
        dead = None if live is None else ~live
        for s in range(T):
            self._step(s, cache, work)  # (S2)
            if dead is not None and dead[s].any():
                for part in self.STATES:
                    cache[part][s + 1][dead[s]] = cache[part][s][dead[s]]  # (PK1) the state stays
        return cache

    def _alloc_cache(self, cache, T, N, workspace=None):
        """Extra per-step arrays a cell keeps for backward (default: none)."""

    def _states(self, cache):
        """The state parts' arrays, ``(T+1, N, H)`` each, in ``STATES`` order."""
        return tuple(cache[part] for part in self.STATES)

    def _head_logits(self, out):
        """(O1) ``q_t = V y_t + c`` for all t: ``(T, N, K)``, one product over all T*N rows."""
        T, N, F = out.shape
        q = np.matmul(out.reshape(T * N, F), self.params["V"].T).reshape(T, N, -1)
        q += self.params["c"]
        return q

    def _logits(self, cache):
        """(O1) ``q_t = V h_t + c`` for all t from a one-layer cache: ``(T, N, K)``."""
        return self._head_logits(cache["h"][1:])

    def _loss_and_delta(self, q, Y, mask, record=None):
        """(O2, O3) the batch loss, (O4) ``dE/dq : (T, N, K)`` and the outputs o (softmax or identity).

        ``record``: None, or a dict that receives ``E_tn`` (T, N), each step's masked loss (``trace``)."""
        N = q.shape[1]
        if self.loss_name == "cross_entropy":
            logp = log_softmax(q)  # (T, N, K)
            o = np.exp(logp)
            E_tn = -np.take_along_axis(logp, Y[..., None], axis=-1)[..., 0]  # (O2) -log o_t[y_t]
            dq = o.copy()
            T, K = q.shape[0], q.shape[2]
            dq.reshape(T * N, K)[np.arange(T * N), Y.reshape(-1)] -= 1  # o_t - y_t, y_t one-hot by label
        else:
            o = q
            r = q - Y
            E_tn = 0.5 * np.einsum("tnk,tnk->tn", r, r)  # (O2) 1/2 ||y_t - o_t||^2
            dq = r
        if mask is not None:
            E_tn = E_tn * mask
            dq = dq * mask[..., None]
        dq /= N  # (O4) m_t (o_t - y_t) / N
        if record is not None:
            record["E_tn"] = E_tn
        return float(E_tn.sum()) / N, dq, o  # (O3)

    # ------------------------------------------------------------------ the stack, forward
    @staticmethod
    def _reverse(x, call, view=False):
        """(BD1, PK3) each sequence's steps reversed (the first L_n of sequence n with lengths): a copy, or
        with ``view`` a view where one can be (no lengths)."""
        if call.rev is None:
            return x[::-1] if view else np.ascontiguousarray(x[::-1])
        return x[call.rev, np.arange(x.shape[1])]

    def _layer_output(self, layer_states, call):
        """(ST1, BD1, PK1) ``y : (T, N, D_dir*H_out)`` from each direction's ``h (T+1, N, H_out)``."""
        if len(layer_states) == 1 and call.live is None:
            return layer_states[0][1:]  # a view: the one-direction output is the state sequence itself
        T, N, Ho = layer_states[0].shape[0] - 1, layer_states[0].shape[1], layer_states[0].shape[2]
        y = np.empty((T, N, len(layer_states) * Ho), dtype=layer_states[0].dtype)
        for d, h in enumerate(layer_states):  # (BD1) the reverse direction's outputs reversed back
            y[..., d * Ho : (d + 1) * Ho] = h[1:] if d == 0 else self._reverse(h[1:], call, view=True)
        if call.live is not None:
            y *= call.live[..., None]  # (PK1) y_t = 0 past the end
        return y

    def _run(self, call, workspace=None):
        """(ST1-ST3, BD1, PK1, DO1): each layer-direction's cache and the top layer's output ``out``."""
        x, is_ids = call.X, call.is_ids
        caches = []
        out = None
        for l in range(self.num_layers):
            layer = []
            for d in range(self.num_directions):
                cell = self._cell(l, d)
                xd = x if d == 0 else self._reverse(x, call)  # (BD1)
                s0 = self._cell_state(call.state0, l * self.num_directions + d)
                layer.append(cell._forward(xd, is_ids, s0, workspace, live=call.live))
            caches.append(layer)
            out = self._layer_output([c["h"] for c in layer], call)  # (ST1)
            if l < self.num_layers - 1:
                x, is_ids = (out if call.drop is None else out * call.drop[l]), False  # (ST2, DO1)
        return caches, out

    def _final_state(self, caches) -> tuple:
        """Each part's final state in the internal layout: ``(N, size)`` (flat) or stacked (ST3, BD3)."""
        if self._cells == 1:
            return tuple(caches[0][0][part][-1].copy() for part in self.STATES)
        return tuple(np.stack([c[part][-1] for layer in caches for c in layer]) for part in self.STATES)

    # ------------------------------------------------------------------ one cell, backward
    def _bptt(self, cache, dh_out, truncate, workspace=None, d_final=None, record=None):
        """(B1, B2, TR, PK2): the deltas ``dG : (T, N, width)`` and dE/d(initial state) for each state part.

        ``d_final``: None, or dE/d(final state) for each part (VJ1), entering at the last step.
        ``record``: None, or a dict that receives ``dstates``, each part's dE/d(state) ``(T+1, N, size)``
        as the step back reads it (index 0: dE/ds_0) (``trace``).
        """
        T, N = dh_out.shape[:2]
        GW = self._delta_width
        sizes = [self._part_size(part) for part in self.STATES]
        if truncate is None or truncate >= T - 1:  # full BPTT
            dG = self._empty((T, N, GW), workspace, "dG")
            if d_final is None:
                dstate = tuple(np.zeros((N, n), dtype=self.dtype) for n in sizes)
            else:
                dstate = tuple(np.array(d, dtype=self.dtype) for d in d_final)
            live = cache.get("live")
            dS = None if record is None else [np.zeros((T + 1, N, n), dtype=self.dtype) for n in sizes]
            for s in range(T - 1, -1, -1):
                np.add(dstate[0], dh_out[s], out=dstate[0])  # (B1) dE/dh_t = dq_t V + dE/dh_t from step t+1
                if dS is not None:
                    for i, d in enumerate(dstate):
                        dS[i][s + 1] = d
                prev = self._step_back(s, s + 1, dstate, cache, dG[s])  # (B2)
                if live is not None and not live[s].all():
                    dead = ~live[s]
                    dG[s][dead] = 0  # (PK2) no step past the end
                    prev = tuple(np.where(dead[:, None], a, b) for a, b in zip(dstate, prev))  # (PK2) passes
                dstate = prev
            if dS is not None:
                for i, d in enumerate(dstate):
                    dS[i][0] = d
                record["dstates"] = dS
            return dG, dstate
        dG, dstate0, _ = self._bptt_lags(cache, [dh_out.reshape(T * N, -1)], truncate, record=record)
        return dG, dstate0

    def _bptt_lags(self, cache, inject, truncate, want_dx=False, record=None):
        """(TR, TR2, PK2): truncated BPTT by lag. ``inject[l]`` (rows (T-l)*N: steps 1..T-l, or None) is the
        output-side gradient of the lag-l chains (lag 0: dE_t/dh_t; a layer below: (TR2)).

        Returns ``dG (T, N, width)`` summed over lags, dE/d(initial state) per part, and with ``want_dx`` the
        input gradient of each lag's chains (ST5), rows as ``inject``'s. ``record``: as ``_bptt``'s, with each
        state's dE/d(state) summed over the chains (windows) that reach it.
        """
        k = truncate
        T, N = cache["gates"].shape[:2]
        GW, GH = self._delta_width, self.GATES * self.hidden_size
        sizes = [self._part_size(part) for part in self.STATES]
        live = cache.get("live")
        dG = np.zeros((T, N, GW), dtype=self.dtype)
        dstate0 = tuple(np.zeros((N, n), dtype=self.dtype) for n in sizes)
        # (TR) every E_t with t - l >= 1 sits at state j = t - l (array index j - 1); all step back together
        first = inject[0] if inject and inject[0] is not None else np.zeros((T * N, sizes[0]), self.dtype)
        dstate = (first,)  # lag 0: each E_t at its own h_t; nothing yet on c_t
        dstate += tuple(np.zeros((T * N, n), dtype=self.dtype) for n in sizes[1:])
        dG_rows = np.empty((T * N, GW), dtype=self.dtype)
        dx = []
        dS = None if record is None else [np.zeros((T + 1, N, n), dtype=self.dtype) for n in sizes]
        for lag in range(k + 1):
            M = T - lag  # sources j = 1..M
            if lag > 0 and lag < len(inject) and inject[lag] is not None:
                dstate = (dstate[0] + inject[lag],) + dstate[1:]  # (TR2) from the layer above, same lag
            if dS is not None:
                for i, d in enumerate(dstate):
                    dS[i][1 : M + 1] += d.reshape(M, N, -1)
            dG_lag = dG_rows[: M * N]
            dprev = self._step_back(0, M, dstate, cache, dG_lag)  # (B2) steps j = 1..M, each E_t's own chain
            if live is not None:
                dead = ~live[:M].reshape(-1)
                if dead.any():
                    dG_lag[dead] = 0  # (PK2)
                    dprev = tuple(np.where(dead[:, None], a, b) for a, b in zip(dstate, dprev))
            dG[:M] += dG_lag.reshape(M, N, GW)  # (B3) summed over the E_t whose window holds step j
            if want_dx:
                dx.append(np.matmul(dG_lag[:, :GH], self.params["U"]))  # (ST5) this lag's chains
            for d0, d in zip(dstate0, dprev):
                d0 += d[:N]  # (B4) the chains at j = 1 reach s_0 (t - k <= 1)
            dstate = tuple(d[N:] for d in dprev)  # states j - 1 >= 1 are the next lag's sources
            if M == 1:
                break
        if dS is not None:
            for i, d in enumerate(dstate0):
                dS[i][0] = d
            record["dstates"] = dS
        return dG, dstate0, dx

    def _hidden_deltas(self, dG, cache):
        """dGh of (B3): the delta of ``W h_{t-1} [+ bh]``; equal to dG unless the cell says otherwise."""
        return dG

    def _cell_grads(self, cache, dG) -> dict:
        """Gradients of a cell's own extra parameters (the LSTM's projection Wr, (PR4)); default none."""
        return {}

    def _weight_grads(self, cache, dG):
        """(B3) dU, db, dW [, dbh] as single products over all T*N rows, after the time loop."""
        X, h = cache["X"], cache["h"]
        T, N, GW = dG.shape
        GH = self.GATES * self.hidden_size
        dG2 = dG.reshape(T * N, GW)
        dGg = dG2 if GW == GH else dG2[:, :GH]  # the gates' deltas (a projection's follow them)
        grads = {}
        if cache["is_ids"]:
            dUT = np.zeros((self.input_size, GH), dtype=self.dtype)
            np.add.at(dUT, X.reshape(-1), dGg)  # (B3) dU[:, x] += dG_t for each token x
            grads["U"] = dUT.T.copy()
        else:
            # (B3) sum_t dG_t^T x_t, computed as (sum_t x_t^T dG_t)^T: OpenBLAS runs this layout of the
            # T*N-deep product faster (benchmarks/); the gradient is then a transposed (F-ordered) array
            grads["U"] = (X.reshape(T * N, -1).T @ dGg).T
        if "b" in self.params:
            grads["b"] = dGg.sum(axis=0)  # (B3)
        dGh2 = self._hidden_deltas(dG, cache).reshape(T * N, GH)
        grads["W"] = (h[:-1].reshape(T * N, h.shape[-1]).T @ dGh2).T  # (B3) sum_t dGh_t^T h_{t-1}
        if self.HIDDEN_BIAS and "bh" in self.params:
            grads["bh"] = dGh2.sum(axis=0)  # (B3)
        grads.update(self._cell_grads(cache, dG))
        return grads

    # ------------------------------------------------------------------ the stack, backward
    def _run_back(self, call, caches, d_out, truncate=None, workspace=None, d_final=None, want_dx=False,
                  record=None):
        """(ST4-ST6, BD2, PK2, DO2, TR2) from dE/d(out) down through the layers.

        Returns ``(grads, dstate0, dX)``: the cells' gradients under the model's names, dE/d(initial state)
        per part (internal layout), and dE/dX (time-major, None unless ``want_dx`` and dense input).
        ``d_final``: None or dE/d(final state) per part, internal layout (VJ1).
        ``record``: None, or a dict that receives, under each cell's ``(l, d)``, a dict with that cell's
        ``dstates`` (``_bptt``) and ``dG`` (``trace``).
        """
        L, Dd, Ho = self.num_layers, self.num_directions, self._hout
        T, N = d_out.shape[:2]
        lagged = truncate is not None and truncate < T - 1 and L > 1  # (TR2)
        grads, d0 = {}, [[None] * self._cells for _ in self.STATES]
        d_in_lags = None
        dX = None
        for l in range(L - 1, -1, -1):
            need_dx = l > 0 or (want_dx and not call.is_ids)
            d_in = None
            for d in range(Dd):
                cell, cache, k = self._cell(l, d), caches[l][d], l * Dd + d
                rec = None if record is None else record.setdefault((l, d), {})
                if lagged:
                    if l == L - 1:
                        dh = d_out if call.live is None else d_out * call.live[..., None]  # (PK2)
                        inject = [dh.reshape(T * N, Ho)]
                    else:
                        inject = d_in_lags
                    dG, ds0, dx_lags = cell._bptt_lags(cache, inject, truncate, want_dx=need_dx, record=rec)
                else:
                    dh = d_out if Dd == 1 else d_out[..., d * Ho : (d + 1) * Ho]
                    if d == 1:
                        dh = self._reverse(dh, call, view=True)  # (BD2) read one step at a time
                    if call.live is not None:
                        dh = dh * call.live[..., None]  # (PK2) y_t is the constant 0 past the end
                    fin = None if d_final is None else self._cell_state(d_final, k)
                    dG, ds0 = cell._bptt(cache, dh, truncate, workspace, d_final=fin, record=rec)
                if rec is not None:
                    rec["dG"] = dG.copy()
                for key, g in cell._weight_grads(cache, dG).items():
                    grads[key + self._suffix(l, d)] = g
                for i, v in enumerate(ds0):
                    d0[i][k] = v
                if need_dx:
                    if lagged:
                        d_in = dx_lags
                    else:
                        GH = cell.GATES * cell.hidden_size
                        dx = np.matmul(dG.reshape(T * N, -1)[:, :GH], cell.params["U"])  # (ST5)
                        dx = dx.reshape(T, N, -1)
                        if d_in is None:
                            d_in = dx if d == 0 else self._reverse(dx, call)
                        else:
                            d_in += self._reverse(dx, call, view=True)  # (ST6) both directions, (BD2)
            if l > 0:
                if lagged:
                    d_in_lags = d_in if call.drop is None else [
                        g * call.drop[l - 1][: g.shape[0] // N].reshape(g.shape) for g in d_in]  # (DO2)
                else:
                    d_out = d_in if call.drop is None else d_in * call.drop[l - 1]  # (ST6, DO2)
            else:
                dX = d_in if not lagged else None
        if self._cells == 1:
            dstate0 = tuple(parts[0] for parts in d0)
        else:
            dstate0 = tuple(np.stack(parts) for parts in d0)
        return grads, dstate0, dX

    # ------------------------------------------------------------------ public: with a head
    def forward(self, X, h0=None, lengths=None, dropout_masks=None):
        """Outputs and states.

        With a head (``output_size=K``): ``(P, S)``. P : (T, N, K) the outputs o_t (probabilities for
        cross_entropy, V y_t + c for squared_error); for a one-layer, one-direction model S : (T+1, N, H) the
        hidden states with ``S[0] = h0`` (the LSTM returns ``(S, C)``; batch-first models N first), for any
        other model S is the recurrent module's ``(out, h_n)`` as ``recurrent`` returns it.
        Without a head (``output_size=None``): the recurrent module's ``(out, h_n)``, see ``recurrent``.
        X : (T, N, D) floats or (T, N) integer token ids (batch-first: N first); h0 : see ``loss_and_grad``.
        """
        if self.output_size is None:
            return self.recurrent(X, h0=h0, lengths=lengths, dropout_masks=dropout_masks)
        call = self._draw(self._check_call(X, None, h0, None, lengths, dropout_masks, need_Y=False))
        caches, out = self._run(call)
        q = self._head_logits(out)
        if self.loss_name == "cross_entropy":
            q = np.exp(log_softmax(q))
        q = self._public_layout(q)
        if self._cells == 1:
            states = tuple(self._public_layout(s) for s in self._states(caches[0][0]))
            return q, self.public_state(states)
        return q, self._module_result(caches, out)

    def kink_distance(self, X, h0=None, lengths=None, dropout_masks=None) -> float:
        """The smallest |z_t| over the relu RNN's pre-activations (inf for a smooth cell): how close to the
        kink a finite-difference step starts."""
        if getattr(self, "nonlinearity", None) != "relu":
            return float("inf")
        call = self._draw(self._check_call(X, None, h0, None, lengths, dropout_masks, need_Y=False))
        caches, _ = self._run(call)
        return float(min(np.abs(c["gates"]).min() for layer in caches for c in layer))

    def validate(self, X, Y, h0=None, truncate=None, mask=None, lengths=None, dropout_masks=None) -> None:
        """Check the arguments of ``loss_and_grad`` as it would, without computing anything.

        Raises ValueError or TypeError naming the argument, what was expected and what was given: shapes,
        dtypes, token-id and label ranges, finiteness, the mask, the lengths, the dropout masks and the
        initial state. Costs one pass over the data's values (no forward pass) and leaves nothing behind.
        """
        self._need_head("validate")
        self._check_call(X, Y, h0, mask, lengths, dropout_masks)
        self._check_truncate(truncate)

    def _check_all(self, X, Y, h0, mask):
        """``(X, is_ids, Y, state0, mask)`` validated, time-major (the one-layer private API)."""
        call = self._check_call(X, Y, h0, mask)
        return call.X, call.is_ids, call.Y, call.state0, call.mask

    def loss(self, X, Y, h0=None, mask=None, return_outputs=False, return_state=False, workspace=None,
             lengths=None, dropout_masks=None):
        """Batch loss (O3): the mean over the N sequences of each one's sum over t of E_t.

        With ``return_outputs`` also the outputs o_t ``(T, N, K)`` (as ``forward``), with ``return_state``
        also the final state (as ``loss_and_grad``): ``(E[, outputs][, state])``, from one forward pass.
        ``workspace``: see ``Workspace`` (the outputs are never in it). ``lengths``, ``dropout_masks``: see
        ``loss_and_grad``.
        """
        self._need_head("loss")
        call = self._check_call(X, Y, h0, mask, lengths, dropout_masks)
        self._check_workspace(workspace)
        call = self._draw(call)
        caches, out = self._run(call, workspace)
        E, _, o = self._loss_and_delta(self._head_logits(out), call.Y, call.mask)
        if not (return_outputs or return_state):
            return E
        result = (E,)
        if return_outputs:
            result += (self._public_layout(o),)
        if return_state:
            result += (self.public_state(self._final_state(caches)),)
        return result

    # ------------------------------------------------------------------ reverse mode
    def loss_and_grad(self, X, Y, h0=None, truncate=None, mask=None, return_state=False, workspace=None,
                      lengths=None, dropout_masks=None, snapshots=None):
        """The loss (O3) and its gradient by (truncated) backpropagation through time.

        Parameters
        ----------
        X : (T, N, D) float array, or (T, N) integer token ids in [0, D) (they index U's columns);
            batch-first models take ``(N, T, ...)`` here and in Y, mask and the outputs
        Y : (T, N) integer labels in [0, K) for cross_entropy; (T, N, K) floats for squared_error
        h0 : the initial state or None (zeros): ``(N, H)`` for a one-layer, one-direction model (the LSTM a
            tuple ``(h0, c0)``, either part None), else torch's ``(D*num_layers, N, H_out)`` (see the module
            docstring)
        truncate : None (full BPTT) or int k >= 0: each E_t flows back through k+1 steps (module docstring)
        mask : (T, N) booleans or None; a False step adds no loss and its target is ignored
        return_state : also return the final state, in the form ``h0`` accepts (to carry into the next chunk)
        workspace : a ``Workspace`` whose arrays the pass may reuse (for repeated calls), or None
        lengths : (N,) integers in [1, T], any order, or None: packed sequences (PK1-PK4); steps past a
            sequence's end carry no loss and leave its state alone
        dropout_masks : None (drawn in training mode when dropout > 0) or num_layers-1 keep masks (DO1)
        snapshots : None (store every state), ``"sqrt"`` or an int s >= 1: checkpointed BPTT, the same
            full-BPTT gradient from s stored states and recomputation (``manual_bp.long_bptt``; one layer,
            no truncation): ``"sqrt"`` segments of ~sqrt(T) steps, an int the optimal revolve schedule

        Returns
        -------
        ``(loss, grads)`` or ``(loss, grads, state)``; ``grads`` has the keys and shapes of ``params`` plus
        ``"h0"`` = dE/ds_0 (and ``"c0"`` for the LSTM) in the layout of the state, in the model's dtype.
        """
        if snapshots is not None:
            from .long_bptt import loss_and_grad_checkpointed

            if lengths is not None or dropout_masks is not None:
                raise ValueError("snapshots support one-layer models without lengths or dropout masks; got "
                                 f"lengths={'set' if lengths is not None else None}, dropout_masks="
                                 f"{'set' if dropout_masks is not None else None}")
            return loss_and_grad_checkpointed(self, X, Y, h0=h0, mask=mask, snapshots=snapshots,
                                              return_state=return_state, truncate=truncate,
                                              workspace=workspace)
        self._need_head("loss_and_grad")
        call = self._check_call(X, Y, h0, mask, lengths, dropout_masks)
        truncate = self._check_truncate(truncate)
        self._check_workspace(workspace)
        call = self._draw(call)
        E, grads, caches = self._gradient(call, truncate, workspace)
        if not return_state:
            return E, grads
        return E, grads, self.public_state(self._final_state(caches))

    def _gradient(self, call, truncate, workspace=None, record=None):
        """``loss_and_grad``'s pass on a checked, drawn call: ``(E, grads, caches)``. ``record``: None, or a
        dict that receives what ``trace`` shows: ``out``, ``q``, ``o``, ``dq``, ``E_tn`` and, per cell, what
        ``_run_back`` records."""
        caches, out = self._run(call, workspace)
        T, N, F = out.shape
        q = self._head_logits(out)
        E, dq, o = self._loss_and_delta(q, call.Y, call.mask, record)
        if record is not None:
            record.update(out=out.copy(), q=q.copy(), o=o.copy(), dq=dq.copy())
        K = self.output_size
        dq2 = dq.reshape(T * N, K)
        grads = {
            "V": dq2.T @ out.reshape(T * N, F),  # (O5) sum_t dq_t^T y_t
            "c": dq2.sum(axis=0),  # (O5)
        }
        d_out = np.matmul(dq2, self.params["V"], out=self._empty((T * N, F), workspace, "dh_out"))
        d_out = d_out.reshape(T, N, F)  # (B1, ST4) first path: E_t through V
        cells = None if record is None else record.setdefault("cells", {})
        cell_grads, dstate0, _ = self._run_back(call, caches, d_out, truncate, workspace, record=cells)
        grads.update(cell_grads)
        grads = {k: grads[k] for k in self.params}
        for part, d in zip(self.STATES, dstate0):
            grads[f"{part}0"] = d  # (B4)
        return E, grads, caches

    # ------------------------------------------------------------------ trace
    #: the state parts' names in the cell's derivation (the RNN's docstring calls its state s_t)
    STATE_NAMES = {"h": "h", "c": "c"}
    #: the cell's forward intermediates for ``trace``: (name, equation, meaning, cache key, block or None)
    TRACE_GATES = ()
    #: the cell's gate deltas for ``trace``: (name, equation, meaning, block of dG)
    TRACE_DELTAS = ()

    def trace(self, X, Y, h0=None, truncate=None, mask=None, return_state=False, workspace=None,
              lengths=None, dropout_masks=None, snapshots=None):
        """Every intermediate of ``loss_and_grad`` with the same arguments, under the derivation's names: per
        step the states, the gate activations, the outputs and losses, dE/dh_t, the gate deltas, and the
        truncation window each E_t reached (``manual_bp.trace`` lists them).

        Runs ``loss_and_grad``'s own code with a recorder, so ``trace.loss`` and ``trace.grads`` are its
        results bit for bit (with the same dropout masks: pass ``dropout_masks``, or note that a model in
        training mode draws new ones on every call). ``snapshots`` must be None: a trace keeps every state,
        which is what checkpointing avoids. Returns a ``manual_bp.trace.Trace``; its ``state`` is the final
        state when ``return_state`` is true.
        """
        from .trace import Trace

        if snapshots is not None:
            raise ValueError(f"trace keeps every state and takes no snapshots; got snapshots={snapshots!r} "
                             "(its gradient is the same as with snapshots=None)")
        self._need_head("trace")
        call = self._check_call(X, Y, h0, mask, lengths, dropout_masks)
        truncate = self._check_truncate(truncate)
        self._check_workspace(workspace)
        call = self._draw(call)
        record = {}
        E, grads, caches = self._gradient(call, truncate, workspace, record)
        state = self.public_state(self._final_state(caches)) if return_state else None
        tr = Trace(type(self).__name__, E, grads, state)
        pub = self._public_layout
        T = call.X.shape[0]
        tr.add("x_t", pub(call.X), "input", "the inputs x_1..x_T" + (" (token ids)" if call.is_ids else ""))
        for l, drop in enumerate(call.drop or []):
            tr.add(f"dropout_mask_l{l}", pub(drop), "DO1", f"keep mask / (1 - p), layers {l} to {l + 1}")
        for l, layer in enumerate(caches):
            for d, cache in enumerate(layer):
                self._cell(l, d)._trace_forward(tr, cache, self._suffix(l, d), pub)
        tr.add("q_t", pub(record["q"]), "O1", "V y_t + c, the output logits")
        what = "softmax(q_t)" if self.loss_name == "cross_entropy" else "q_t (identity output)"
        tr.add("yhat_t", pub(record["o"]), "O1", f"{what}, the outputs")
        tr.add("E_t", pub(record["E_tn"]), "O2", "each step's loss per sequence, masked")
        tr.add("E", np.array(E), "O3", "the batch loss: the mean over sequences of each one's sum over t")
        tr.add("dE/dq_t", pub(record["dq"]), "O4", "m_t (yhat_t - y_t) / N")
        tr.add("dE/dV", grads["V"], "O5", "sum_t dE/dq_t^T y_t")
        tr.add("dE/dc", grads["c"], "O5", "sum_t dE/dq_t")
        for l in range(self.num_layers - 1, -1, -1):
            for d in range(self.num_directions):
                rec, sfx = record["cells"][(l, d)], self._suffix(l, d)
                self._cell(l, d)._trace_backward(tr, rec, sfx, pub, grads)
        k = T - 1 if truncate is None else min(truncate, T - 1)
        t = np.arange(1, T + 1)
        tr.add("window", np.stack([np.maximum(1, t - k), t], axis=1), "TR",
               f"the first and last step each E_t's gradient reached (truncate={truncate})")
        return tr

    def _trace_forward(self, tr, cache, sfx, pub):
        """This cell's states and gates into ``tr`` (names with the cell's suffix)."""
        H = self.hidden_size
        for part in self.STATES:
            name = self.STATE_NAMES[part]
            tag = "S2" if part == "h" else "L3"
            tr.add(f"{name}_t{sfx}", pub(cache[part]), tag, f"the states {name}_0 (initial) .. {name}_T")
        for name, tag, meaning, key, block in self.TRACE_GATES:
            if key not in cache:
                continue  # an optional part (the LSTM's m_t without a projection)
            arr = cache[key] if block is None else cache[key][..., block * H : (block + 1) * H]
            tr.add(f"{name}{sfx}", pub(arr), tag, meaning)

    def _trace_backward(self, tr, rec, sfx, pub, grads):
        """This cell's dE/d(state), gate deltas and gradients into ``tr``."""
        H = self.hidden_size
        for part, dS in zip(self.STATES, rec["dstates"]):
            name = self.STATE_NAMES[part]
            if part == "h":
                tag, meaning = "B1", f"dE/d{name}_t along every kept path; index 0: dE/d{name}_0 (B4)"
            else:
                tag, meaning = "L8", "dE/dc_t through c_{t+1} (h_t held fixed); index 0: dE/dc_0 (B4)"
            tr.add(f"dE/d{name}_t{sfx}", pub(dS), tag, meaning)
        for name, tag, meaning, block in self.TRACE_DELTAS:
            tr.add(f"{name}{sfx}", pub(rec["dG"][..., block * H : (block + 1) * H]), tag, meaning)
        for base in self._cell_shapes(0):  # the bare names; the shapes do not matter here
            key = base + sfx
            if key in grads:
                tr.add(f"dE/d{key}", grads[key], "PR4" if base == "Wr" else "B3", f"the gradient of {key}")

    # ------------------------------------------------------------------ forward mode
    def _run_jvp(self, call, caches, tan, dstate0):
        """(J1, J2, ST7, BD1, PK2, DO2): the tangents of ``out`` (T, N, F) and of each cell's final state.

        ``tan``: tangents keyed like params (cells' names); ``dstate0``: the initial state's tangent per part,
        internal layout.
        """
        L, Dd = self.num_layers, self.num_directions
        dx = None
        finals = [[None] * self._cells for _ in self.STATES]
        d_out = None
        for l in range(L):
            layer = []
            for d in range(Dd):
                cell, cache, k = self._cell(l, d), caches[l][d], l * Dd + d
                sfx = self._suffix(l, d)
                ctan = {base: tan[base + sfx] for base in cell.params}
                X, is_ids, h = cache["X"], cache["is_ids"], cache["h"]
                T, N = X.shape[:2]
                dGx = cell._project(X, is_ids, ctan["U"], ctan.get("b"))  # (J1) U' x_t + b'
                if dx is not None:
                    dxd = dx if d == 0 else self._reverse(dx, call)
                    dGx += np.matmul(dxd.reshape(T * N, -1), cell.params["U"].T).reshape(T, N, -1)  # (ST7)
                Hp = h.shape[-1]
                dGw = np.matmul(h[:-1].reshape(T * N, Hp), ctan["W"].T).reshape(T, N, -1)  # (J1) W' h_{t-1}
                if "bh" in ctan:
                    dGw += ctan["bh"]
                if "Wr" in ctan:
                    cache["tangent_Wr"] = ctan["Wr"]
                dstates = []
                for part, d0 in zip(self.STATES, self._cell_state(dstate0, k)):
                    dA = np.empty((T + 1, N, cell._part_size(part)), dtype=self.dtype)
                    dA[0] = d0
                    dstates.append(dA)
                live = cache.get("live")
                for s in range(T):
                    cell._step_jvp(s, dGx[s], dGw[s], tuple(a[s] for a in dstates), cache,
                                   tuple(a[s + 1] for a in dstates))  # (J2)
                    if live is not None and not live[s].all():
                        dead = ~live[s]
                        for a in dstates:
                            a[s + 1][dead] = a[s][dead]  # (PK2) the tangent of a kept state
                for i, a in enumerate(dstates):
                    finals[i][k] = a[-1]
                layer.append(dstates[0])
            d_out = self._layer_output(layer, call)  # (ST1) the output's tangent
            if l < L - 1:
                dx = d_out if call.drop is None else d_out * call.drop[l]  # (ST7, DO2)
        if self._cells == 1:
            return d_out, tuple(p[0] for p in finals)
        return d_out, tuple(np.stack(p) for p in finals)

    def _check_tangents(self, tangents, N):
        """Tangents keyed like params (checked), and the initial state's tangent per part (zeros if none)."""
        optional = tuple(f"{part}0" for part in self.STATES)
        tan = check_param_dict("tangents", {k: v for k, v in tangents.items() if k not in optional}
                               if isinstance(tangents, dict) else tangents, self.params, self.dtype)
        dstate0 = []
        for part, key in zip(self.STATES, optional):
            size = self._part_size(part)
            label = "H_out" if (part == "h" and self.proj_size) else "H"
            shape = (("N", N), (label, size)) if self._flat_state else (
                ("D*num_layers", self._cells), ("N", N), (label, size))
            if key in tangents:
                value = tangents[key]
                if self._flat_state and np.ndim(value) == 3:
                    shape = (("D*num_layers", 1),) + shape
                    dstate0.append(as_float_array(f"tangents[{key!r}]", value, self.dtype, shape)[0])
                else:
                    dstate0.append(as_float_array(f"tangents[{key!r}]", value, self.dtype, shape))
            else:
                dstate0.append(np.zeros(tuple(n for _, n in shape), dtype=self.dtype))
        return tan, tuple(dstate0)

    # ------------------------------------------------------------------ forward in time, and second order
    def rtrl(self, X, Y, h0=None, mask=None, return_state=False, return_influence=False):
        """The loss and its exact gradient by real-time recurrent learning (forward in time, no history).

        ``manual_bp.long_bptt.rtrl`` (RTRL1-RTRL9): the influence matrices d state_t / d theta are carried
        forward; memory flat in T, time O(T N H^4) for the RNN. One layer; the same ``(loss, grads)`` as
        ``loss_and_grad`` to rounding.
        """
        from .long_bptt import rtrl

        return rtrl(self, X, Y, h0=h0, mask=mask, return_state=return_state,
                    return_influence=return_influence)

    def hvp(self, X, Y, v, h0=None, mask=None, truncate=None):
        """``(E, grads, Hv)``: the exact Hessian-vector product by the R-operator (Pearlmutter 1994).

        ``manual_bp.recurrent_second_order.hvp`` (tags RS, RR, RL, RG, RO, RT): v keyed like ``params``,
        optionally with ``"h0"`` (``"c0"``); E and grads are ``loss_and_grad``'s bit for bit. A truncated
        gradient has no Hessian: ``truncate < T-1`` raises ValueError. One layer, one direction, a head.
        """
        from .recurrent_second_order import hvp

        return hvp(self, X, Y, v, h0=h0, mask=mask, truncate=truncate)

    def gvp(self, X, Y, v, h0=None, mask=None, truncate=None, structural_damping=0.0):
        """``(E, grads, Gv)``: the Gauss-Newton product J^T H_L J v (+ mu S v, Martens & Sutskever's
        structural damping), ``manual_bp.recurrent_second_order.gvp`` (tags GR, SD)."""
        from .recurrent_second_order import gvp

        return gvp(self, X, Y, v, h0=h0, mask=mask, truncate=truncate, structural_damping=structural_damping)

    def gvp_operator(self, X, Y, h0=None, mask=None, truncate=None):
        """``(E, grads, product)``: one forward and backward pass shared by many ``product(v[,
        structural_damping])`` Gauss-Newton products (what Hessian-free's CG iterations call)."""
        from .recurrent_second_order import gvp_operator

        return gvp_operator(self, X, Y, h0=h0, mask=mask, truncate=truncate)

    def jvp(self, X, *args, **kwargs):
        """Forward-mode directional derivative, with no reverse pass.

        With a head: ``jvp(X, Y, tangents, h0=None, mask=None, lengths=None, dropout_masks=None)`` returns
        ``(loss, dloss)`` with ``dloss = sum_k <dE/dtheta_k, tangents[k]>`` (J1-J3, ST7).
        Without a head (``output_size=None``): ``jvp(X, tangents, h0=None, lengths=None, dropout_masks=None)``
        returns ``((out, h_n), (d_out, d_hn))`` (LSTM: ``h_n`` and ``d_hn`` are pairs ``(h, c)``), the
        module's outputs and their tangents, as ``torch.func.jvp`` of the module.

        tangents : dict keyed like ``params``, optionally with ``"h0"`` (and ``"c0"``) in the state's layout.
        """
        if self.output_size is None:
            return self._module_jvp(X, *args, **kwargs)
        return self._loss_jvp(X, *args, **kwargs)

    def _loss_jvp(self, X, Y, tangents, h0=None, mask=None, lengths=None, dropout_masks=None):
        call = self._check_call(X, Y, h0, mask, lengths, dropout_masks)
        T, N = call.X.shape[:2]
        tan, dstate0 = self._check_tangents(tangents, N)
        call = self._draw(call)
        caches, out = self._run(call)
        d_out, _ = self._run_jvp(call, caches, tan, dstate0)
        q = self._head_logits(out)
        E, dq, _ = self._loss_and_delta(q, call.Y, call.mask)
        F = out.shape[-1]
        dq_tan = np.matmul(d_out.reshape(T * N, F), self.params["V"].T)  # V y'_t
        dq_tan += np.matmul(out.reshape(T * N, F), tan["V"].T)  # V' y_t
        dq_tan += tan["c"]
        return E, float(np.sum(dq.reshape(T * N, -1) * dq_tan))  # (J3)

    def _module_jvp(self, X, tangents, h0=None, lengths=None, dropout_masks=None):
        call = self._check_call(X, None, h0, None, lengths, dropout_masks, need_Y=False)
        tan, dstate0 = self._check_tangents(tangents, call.X.shape[1])
        call = self._draw(call)
        caches, out = self._run(call)
        d_out, d_fin = self._run_jvp(call, caches, tan, dstate0)
        primal = self._module_result(caches, out)
        tangent = (self._public_layout(np.array(d_out)), self.public_state(self._torch_parts(d_fin)))
        return primal, tangent

    # ------------------------------------------------------------------ the recurrent module (torch's)
    def _module_result(self, caches, out):
        """``(out, h_n)`` in the public layout; h_n in torch's layout (LSTM: ``(h_n, c_n)``)."""
        return (self._public_layout(np.array(out)),
                self.public_state(self._torch_parts(self._final_state(caches))))

    def recurrent(self, X, h0=None, lengths=None, dropout_masks=None):
        """The recurrent module alone, as torch's ``module(X, h0)`` (with ``lengths``: on the packed sequence,
        padded back to T steps). Any model (a head is not part of it).

        Returns ``(out, h_n)``: out ``(T, N, D_dir*H_out)`` (batch-first: ``(N, T, ...)``), zero past each
        sequence's end (PK1); h_n ``(D_dir*num_layers, N, H_out)`` in torch's layout, for the LSTM the pair
        ``(h_n, c_n)``. h0 in the model's state layout or torch's.
        """
        call = self._draw(self._check_call(X, None, h0, None, lengths, dropout_masks, need_Y=False))
        caches, out = self._run(call)
        return self._module_result(caches, out)

    def vjp(self, X, d_out, d_hn=None, h0=None, lengths=None, dropout_masks=None, workspace=None):
        """The recurrent module's vector-Jacobian product (VJ1, VJ2), as ``torch.autograd.grad`` gives it.

        The gradient of ``sum(out * d_out) + sum(h_n * d_hn)`` (LSTM: ``d_hn = (d_h, d_c)``, either None) with
        respect to every parameter of the recurrent module (the head's V, c are not part of it), the dense
        input X (key ``"X"``, in X's layout; absent for token ids) and the initial state (``"h0"``, ``"c0"``,
        torch's layout). d_out in out's layout ``(T, N, D_dir*H_out)``; d_hn in torch's state layout (or the
        model's). ``h0``, ``lengths``, ``dropout_masks``, ``workspace``: as ``loss_and_grad``.
        """
        call = self._check_call(X, None, h0, None, lengths, dropout_masks, need_Y=False)
        T, N = call.X.shape[:2]
        d_out = self._time_major(as_float_array(
            "d_out", d_out, self.dtype, self._axes(T, N) + (("D*H_out", self.output_features),)))
        d_final = None
        if d_hn is not None:
            d_final = self._torch_parts(self._check_h0(d_hn, N, name="d_hn"))
        self._check_workspace(workspace)
        call = self._draw(call)
        caches, _ = self._run(call, workspace)
        if self._cells == 1 and d_final is not None:
            d_final = tuple(p[0] for p in d_final)
        cell_grads, dstate0, dX = self._run_back(call, caches, d_out, None, workspace, d_final=d_final,
                                                 want_dx=True)
        grads = {k: cell_grads[k] for k in self.params if k in cell_grads}
        if dX is not None:
            grads["X"] = self._public_layout(dX)  # (VJ2)
        for part, d in zip(self.STATES, self._torch_parts(dstate0)):
            grads[f"{part}0"] = d  # (VJ2, B4)
        return grads

    # ------------------------------------------------------------------ torch
    @classmethod
    def from_torch(cls, module, head=None, loss="cross_entropy", dtype=None, seed=None):
        """The same model from a torch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (matching this class) and an optional
        ``nn.Linear`` head: configuration, weights (torch's two biases summed into ``b`` for the RNN and
        LSTM), batch_first and the training mode. ``dtype`` defaults to the module's (float32 or float64).
        Reads the module through ``state_dict()`` and attributes only. Needs torch installed."""
        from .torch_io import recurrent_from_torch

        return recurrent_from_torch(cls, module, head=head, loss=loss, dtype=dtype, seed=seed)

    def to_torch(self):
        """torch's module with our weights (``bias_hh`` = 0 for RNN and LSTM, so the sum is ``b``), and for
        a model with a head the pair ``(module, head)``, ``head = nn.Linear(D_dir*H_out, K)``. Needs torch."""
        from .torch_io import recurrent_to_torch

        return recurrent_to_torch(self)

    def torch_grads(self, grads) -> dict:
        """Our gradient dict under torch's parameter names (``param_names``; ``bias_ih`` and ``bias_hh`` get
        the same ``b`` gradient in RNN and LSTM), comparable with ``p.grad`` for ``name, p in
        module.named_parameters()``; the head's as ``"head.weight"``, ``"head.bias"``. ``"h0"``/``"c0"`` come
        in torch's state layout, ``"X"`` as it is. Needs no torch."""
        from .torch_io import recurrent_torch_grads

        return recurrent_torch_grads(self, grads)

    def __repr__(self):
        opts = "".join(f", {k}={getattr(self, k)!r}" for k, v in self.OPTIONS.items()
                       if getattr(self, k) != v)
        return (
            f"{type(self).__name__}({self.input_size}, {self.hidden_size}, {self.output_size}, "
            f"loss={self.loss_name!r}, dtype={self.dtype.name}{opts})"
        )


def vanishing_gradients(model, X, Y, h0=None, dropout_masks=None) -> dict:
    """The vanishing gradient, measured: ``||dE_T/ds_k||`` for k = 0..T.

    ``E_T`` is the loss at the last step alone, as a batch mean (1/N) sum_n E_{T,n}, with no mask; the norm
    is the Frobenius norm of the ``(N, H)`` gradient (for N = 1, the vector norm of one sequence's). The
    seed's product ``prod_{j=k+1..T} ds_j/ds_{j-1}`` is in there, and these norms show where it goes to 0.

    Returns a dict of ``(T+1,)`` float arrays indexed by k: ``"h"`` (dE_T/dh_k, the RNN's s_k) and, for the
    LSTM, ``"c"`` (dE_T/dc_k with h_k held fixed: the gradient that flows along the cell state, 0 at k = T).
    These are the gradients with respect to the state (h_k[, c_k]) that step k hands to step k+1, as
    ``retain_grad`` shows them on the state tensors of ``torch.nn.RNN/LSTM/GRU`` run one step at a time.

    A stack of layers (one direction): s_k is every layer's state at k, the norm over all of them (torch's
    ``h_n`` of a step, ``(num_layers, N, H_out)``); step k+1 hands on only through each layer's own
    recurrence, the path from layer l-1 into layer l within a step belonging to that step (ST5).
    Bidirectional models are refused: their reverse direction hands states from k+1 to k. ``dropout_masks``:
    as ``loss_and_grad``.
    """
    if not isinstance(model, Recurrent):
        raise TypeError(f"model must be an RNN, LSTM or GRU; got {type(model).__name__}")
    model._need_head("vanishing_gradients")
    if model.bidirectional:
        raise ValueError("vanishing_gradients needs a one-direction model; got a bidirectional one (its "
                         "reverse direction hands its state from step k+1 to step k)")
    call = model._check_call(X, Y, h0, None, None, dropout_masks)
    call = model._draw(call)
    T, N = call.X.shape[:2]
    caches, out = model._run(call)
    q = model._head_logits(out)[T - 1 : T]  # only step T
    _, dq, _ = model._loss_and_delta(q, call.Y[T - 1 : T], None)  # (O4) for E_T alone
    L = model.num_layers
    cells = [model._cell(l, 0) for l in range(L)]
    dstate = []
    for l in range(L):
        parts = [np.zeros((N, model._part_size(p)), dtype=model.dtype) for p in model.STATES]
        if l == L - 1:
            parts[0] = np.matmul(dq[0], model.params["V"])
        dstate.append(tuple(parts))
    norms = {part: np.empty(T + 1) for part in model.STATES}
    dGs = [np.empty((N, model._delta_width), dtype=model.dtype) for _ in range(L)]
    for k in range(T, -1, -1):
        for i, part in enumerate(model.STATES):
            if L == 1:
                norms[part][k] = float(np.linalg.norm(dstate[0][i]))
            else:
                norms[part][k] = float(np.linalg.norm(np.stack([ds[i] for ds in dstate])))
        if k == 0:
            break
        for l in range(L - 1, -1, -1):
            dstate[l] = cells[l]._step_back(k - 1, k, dstate[l], caches[l][0], dGs[l])  # (B2) state k -> k-1
            if l > 0:  # (ST5, ST6) within step k: into layer l-1's h_k, which step k then takes back
                GH = cells[l].GATES * cells[l].hidden_size
                dx = np.matmul(dGs[l][:, :GH], cells[l].params["U"])
                if call.drop is not None:
                    dx *= call.drop[l - 1][k - 1]
                dstate[l - 1] = (dstate[l - 1][0] + dx,) + tuple(dstate[l - 1][1:])
    return norms
