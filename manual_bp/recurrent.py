"""One recurrent skeleton for RNN, LSTM and GRU: inputs, time loop, output layer, loss, BPTT, truncation, JVP.

The three models differ only in their cell. A cell maps the gate pre-activations of one step, ``G_t``, and the
previous state to the next state; the skeleton does everything around it. Time is the leading axis
(time-major, as torch's default), the batch is rows, and weights have torch's layout ``(n_out, n_in)`` with
the gate blocks stacked: ``U : (nG*H, D)``, ``W : (nG*H, H)``, ``b : (nG*H,)`` with nG = 1 (RNN),
4 (LSTM: i f g o) or 3 (GRU: r z n).

Forward, for t = 1..T (step index s = t-1 in the arrays; states keep the initial state, ``S[0] = s_0``):

    (S1)  G_t = U x_t + b                for all t at once: X @ U.T + b, or the rows U.T[ids] + b (token ids)
    (S2)  (h_t, ...) = cell(G_t, W h_{t-1} [+ bh], h_{t-1}, ...)        the only work inside the time loop
    (O1)  o_t = softmax(V h_t + c)       (cross_entropy)   or   o_t = V h_t + c   (squared_error)
    (O2)  E_t = -log o_t[y_t]            (cross_entropy)   or   E_t = 1/2 ||y_t - o_t||^2
    (O3)  E = (1/N) sum_n sum_t m_tn E_tn      the mean over sequences of each sequence's summed loss, as the
                                               MLP's batch mean; m is the mask (all ones without one)

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
"""

from __future__ import annotations

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
      deltas into ``dG (M, nG*H)`` and returns dE/d(state at s) for each part;
    - ``_step_jvp(s, dgx, dgw, dprev, cache, dnext)``: (J2);
    - ``_hidden_deltas(dG, cache)``: dGh of (B3) from dG (default: dG itself).
    - ``_alloc_cache(cache, T, N, workspace)``: any extra per-step arrays backward reads (LSTM: tanh(c_t);
      GRU: gh_n), made with ``self._empty(shape, workspace, name)``.

    The cache of a forward pass holds ``X``, ``is_ids``, ``gates (T, N, nG*H)``, ``W_T`` (W transposed,
    contiguous), and each state part by its name, ``cache["h"]`` (and ``cache["c"]``), ``(T+1, N, H)`` with
    the initial state at index 0. Inside the package the state is always a tuple of parts in ``STATES`` order;
    ``state_parts`` and ``public_state`` convert at the public boundary, where the RNN and GRU take and return
    one array and the LSTM a pair ``(h, c)``.
    """

    GATES = 1
    STATES = ("h",)
    HIDDEN_BIAS = False
    #: time-major: X (T, N, ...) and Y (T, N[, K]) index sequences along axis 1
    BATCH_AXIS = 1

    def __init__(self, input_size, hidden_size, output_size, loss="cross_entropy", dtype=np.float64,
                 seed=None):
        self.input_size = check_int("input_size", input_size, minimum=1)
        self.hidden_size = check_int("hidden_size", hidden_size, minimum=1)
        self.output_size = check_int("output_size", output_size, minimum=1)
        self.loss_name = check_choice("loss", loss, RECURRENT_LOSSES)
        self.dtype = check_dtype(dtype)
        self.seed = check_seed(seed)
        self.params = self._init_params(np.random.default_rng(self.seed))

    # ------------------------------------------------------------------ set-up
    def config(self) -> dict:
        """The constructor arguments, enough to rebuild the (untrained) model: ``type(m)(**m.config())``."""
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "output_size": self.output_size,
            "loss": self.loss_name,
            "dtype": self.dtype.name,
            "seed": self.seed,
        }

    def _init_params(self, rng) -> dict:
        """torch's default for ``nn.RNN/LSTM/GRU`` and ``nn.Linear(H, K)``: all ~ U(-1/sqrt(H), 1/sqrt(H)).

        Biases are non-zero from the start, so every bias path is exercised.
        """
        D, H, K, GH = self.input_size, self.hidden_size, self.output_size, self.GATES * self.hidden_size
        bound = 1.0 / np.sqrt(H)
        shapes = {"U": (GH, D), "W": (GH, H), "b": (GH,)}
        if self.HIDDEN_BIAS:
            shapes["bh"] = (GH,)
        shapes.update({"V": (K, H), "c": (K,)})
        return {k: rng.uniform(-bound, bound, shape).astype(self.dtype) for k, shape in shapes.items()}

    # ------------------------------------------------------------------ state at the public boundary
    def public_state(self, parts: tuple):
        """The package's tuple of state parts in the form users pass as ``h0``: an array, or ``(h, c)``."""
        return parts[0] if len(self.STATES) == 1 else tuple(parts)

    def state_parts(self, h0, N=None) -> tuple:
        """``h0`` in any form ``loss_and_grad`` accepts, validated, as the tuple of parts (None -> zeros).

        ``N`` is the batch size; when omitted it is read from ``h0`` itself.
        """
        if N is None:
            first = h0[0] if isinstance(h0, (tuple, list)) and len(self.STATES) > 1 else h0
            N = np.shape(first)[0] if first is not None else 1
        return self._check_h0(h0, N)

    # ------------------------------------------------------------------ validation
    def _check_X(self, X):
        """``(X, is_ids)``: integer token ids ``(T, N)`` in [0, D), or floats ``(T, N, D)`` in the dtype."""
        D = self.input_size
        arr = np.asarray(X)
        if arr.dtype != np.bool_ and np.issubdtype(arr.dtype, np.integer):
            if arr.ndim != 2:
                raise ValueError(
                    f"X of integer token ids must have shape (T, N); got {arr.shape} "
                    f"(float inputs have shape (T, N, D={D}))"
                )
            check_shape("X", arr, (("T", None), ("N", None)))
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi >= D:
                bad = lo if lo < 0 else hi
                where = tuple(int(i) for i in np.argwhere(arr == bad)[0])
                raise ValueError(f"X token ids must lie in [0, D={D}); got {bad} at index {where}")
            return arr.astype(np.intp, copy=False), True
        if arr.ndim != 3 and arr.dtype.kind == "f":
            raise ValueError(
                f"X must have shape (T, N, D={D}) (or integer token ids (T, N)); got {arr.shape}"
            )
        return as_float_array("X", arr, self.dtype, (("T", None), ("N", None), ("D", D))), False

    def _check_mask(self, mask, T, N):
        """None, or booleans ``(T, N)``; returned as the model dtype (1 keeps a step's loss, 0 drops it)."""
        if mask is None:
            return None
        arr = np.asarray(mask)
        if arr.dtype != np.bool_:
            raise TypeError(f"mask must be a boolean array (T, N); got dtype {arr.dtype}")
        check_shape("mask", arr, (("T", T), ("N", N)))
        return arr

    def _check_Y(self, Y, T, N, mask):
        """Labels ``(T, N)`` in [0, K) (cross_entropy) or floats ``(T, N, K)``; masked-out entries ignored."""
        K = self.output_size
        arr = np.asarray(Y)
        keep = np.ones((T, N), dtype=bool) if mask is None else mask
        if self.loss_name == "cross_entropy":
            if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
                raise TypeError(
                    f"Y must hold integer class labels (T={T}, N={N}) for cross_entropy; "
                    f"got dtype {arr.dtype}"
                )
            check_shape("Y", arr, (("T", T), ("N", N)))
            live = arr[keep]
            if live.size and (live.min() < 0 or live.max() >= K):
                bad = int(live.min()) if live.min() < 0 else int(live.max())
                where = tuple(int(i) for i in np.argwhere((arr == bad) & keep)[0])
                raise ValueError(f"Y labels must lie in [0, K={K}); got {bad} at index {where}")
            return np.where(keep, arr, 0).astype(np.intp)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError(f"Y must be a numeric array (T, N, K) for squared_error; got dtype {arr.dtype}")
        check_shape("Y", arr, (("T", T), ("N", N), ("K", K)))
        arr = arr.astype(self.dtype, copy=False)
        check_finite("Y", np.where(keep[..., None], arr, 0))
        return arr if mask is None else np.where(keep[..., None], arr, 0).astype(self.dtype, copy=False)

    def _check_h0(self, h0, N):
        """The initial state: a tuple of ``(N, H)`` arrays, one per part of ``STATES`` (None means zeros)."""
        H = self.hidden_size
        shape = (("N", N), ("H", H))
        if len(self.STATES) == 1:
            parts = (h0,)
        else:
            if h0 is None:
                parts = (None,) * len(self.STATES)
            elif not isinstance(h0, (tuple, list)) or len(h0) != len(self.STATES):
                names = ", ".join(f"{p}0" for p in self.STATES)
                got = type(h0).__name__
                if isinstance(h0, (tuple, list)):
                    got += f" of length {len(h0)}"
                raise TypeError(f"h0 must be None or a tuple ({names}) of (N, H) arrays or None; got {got}")
            else:
                parts = tuple(h0)
        out = []
        for part, value in zip(self.STATES, parts):
            if value is None:
                out.append(np.zeros((N, H), dtype=self.dtype))
            else:
                out.append(as_float_array(f"{part}0", value, self.dtype, shape))
        return tuple(out)

    @staticmethod
    def _check_truncate(truncate):
        if truncate is None:
            return None
        return check_int("truncate", truncate, minimum=0)

    @staticmethod
    def _check_workspace(workspace):
        if workspace is not None and not isinstance(workspace, Workspace):
            raise TypeError(
                f"workspace must be a manual_bp.Workspace or None; got {type(workspace).__name__}"
            )
        return workspace

    def _empty(self, shape, workspace=None, name=None) -> np.ndarray:
        """``np.empty(shape)`` in the model's dtype, or the workspace's array ``name`` (see ``Workspace``)."""
        if workspace is None:
            return np.empty(shape, dtype=self.dtype)
        return workspace.empty(name, shape, self.dtype)

    # ------------------------------------------------------------------ forward
    def _project(self, X, is_ids, U, b, workspace=None):
        """(S1) ``U x_t + b`` for every step at once: ``(T, N, nG*H)``, a buffer the loop fills in place."""
        if is_ids:
            G = np.ascontiguousarray(U.T)[X]  # (T, N, nG*H) row gather: column x of U is U @ onehot(x)
            G += b
            return G
        T, N, D = X.shape
        out = self._empty((T * N, U.shape[0]), workspace, "gates")
        G = np.matmul(X.reshape(T * N, D), U.T, out=out).reshape(T, N, -1)  # (T, N, nG*H)
        G += b
        return G

    def _forward(self, X, is_ids, state0, workspace=None):
        """The cache of a forward pass (see the class docstring): ``X``, ``gates``, each state part.

        ``workspace``: reuse its arrays for the cache (see ``Workspace``).
        """
        T, N = X.shape[:2]
        H = self.hidden_size
        gates = self._project(X, is_ids, self.params["U"], self.params["b"], workspace)
        cache = {"X": X, "is_ids": is_ids, "gates": gates}
        # W^T (H, nG*H) as a contiguous copy, once per pass: the step's (N, H) @ (H, nG*H) product runs
        # 1.4-1.9x faster in OpenBLAS from a row-major W^T than from the transposed view of W (small N).
        cache["W_T"] = np.ascontiguousarray(self.params["W"].T)
        for part, s0 in zip(self.STATES, state0):
            states = self._empty((T + 1, N, H), workspace, part)
            states[0] = s0
            cache[part] = states
        self._alloc_cache(cache, T, N, workspace)
        work = np.empty((N, self.GATES * H), dtype=self.dtype)
        for s in range(T):
            self._step(s, cache, work)  # (S2)
        return cache

    def _alloc_cache(self, cache, T, N, workspace=None):
        """Extra per-step arrays a cell keeps for backward (default: none)."""

    def _states(self, cache):
        """The state parts' arrays, ``(T+1, N, H)`` each, in ``STATES`` order."""
        return tuple(cache[part] for part in self.STATES)

    def _logits(self, cache):
        """(O1) ``q_t = V h_t + c`` for all t: ``(T, N, K)``, one product over all T*N rows."""
        h = cache["h"]
        T, N, H = h.shape[0] - 1, h.shape[1], h.shape[2]
        q = np.matmul(h[1:].reshape(T * N, H), self.params["V"].T).reshape(T, N, -1)
        q += self.params["c"]
        return q

    def _loss_and_delta(self, q, Y, mask):
        """(O2, O3) the batch loss, (O4) ``dE/dq : (T, N, K)`` and the outputs o (softmax or identity)."""
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
        return float(E_tn.sum()) / N, dq, o  # (O3)

    def forward(self, X, h0=None):
        """Outputs and states.

        X : (T, N, D) floats or (T, N) integer token ids; h0 : see ``loss_and_grad``.
        Returns ``(P, S)``: P : (T, N, K) the outputs o_t (probabilities for cross_entropy, V h_t + c for
        squared_error); S : (T+1, N, H) the hidden states with ``S[0] = h0`` (the LSTM returns ``(S, C)``).
        """
        X, is_ids = self._check_X(X)
        state0 = self._check_h0(h0, X.shape[1])
        cache = self._forward(X, is_ids, state0)
        q = self._logits(cache)
        if self.loss_name == "cross_entropy":
            q = np.exp(log_softmax(q))
        return q, self.public_state(self._states(cache))

    def kink_distance(self, X, h0=None) -> float:
        """The smallest |z_t| over the relu RNN's pre-activations (inf for a smooth cell): how close to the
        kink a finite-difference step starts."""
        if getattr(self, "nonlinearity", None) != "relu":
            return float("inf")
        X, is_ids = self._check_X(X)
        cache = self._forward(X, is_ids, self._check_h0(h0, X.shape[1]))
        return float(np.abs(cache["gates"]).min())

    def validate(self, X, Y, h0=None, truncate=None, mask=None) -> None:
        """Check the arguments of ``loss_and_grad`` as it would, without computing anything.

        Raises ValueError or TypeError naming the argument, what was expected and what was given: shapes,
        dtypes, token-id and label ranges, finiteness, the mask and the initial state. Costs one pass over
        the data's values (no forward pass) and leaves nothing behind.
        """
        self._check_all(X, Y, h0, mask)
        self._check_truncate(truncate)

    def _check_all(self, X, Y, h0, mask):
        X, is_ids = self._check_X(X)
        T, N = X.shape[:2]
        state0 = self._check_h0(h0, N)
        mask = self._check_mask(mask, T, N)
        Y = self._check_Y(Y, T, N, mask)
        if mask is not None:
            mask = mask.astype(self.dtype)
        return X, is_ids, Y, state0, mask

    def loss(self, X, Y, h0=None, mask=None, return_outputs=False, return_state=False, workspace=None):
        """Batch loss (O3): the mean over the N sequences of each one's sum over t of E_t.

        With ``return_outputs`` also the outputs o_t ``(T, N, K)`` (as ``forward``), with ``return_state``
        also the final state (as ``loss_and_grad``): ``(E[, outputs][, state])``, from one forward pass.
        ``workspace``: see ``Workspace`` (the outputs are never in it).
        """
        X, is_ids, Y, state0, mask = self._check_all(X, Y, h0, mask)
        self._check_workspace(workspace)
        cache = self._forward(X, is_ids, state0, workspace)
        E, _, o = self._loss_and_delta(self._logits(cache), Y, mask)
        if not (return_outputs or return_state):
            return E
        out = (E,)
        if return_outputs:
            out += (o,)
        if return_state:
            out += (self.public_state(tuple(part[-1].copy() for part in self._states(cache))),)
        return out

    # ------------------------------------------------------------------ reverse mode
    def loss_and_grad(self, X, Y, h0=None, truncate=None, mask=None, return_state=False, workspace=None):
        """The loss (O3) and its gradient by (truncated) backpropagation through time.

        Parameters
        ----------
        X : (T, N, D) float array, or (T, N) integer token ids in [0, D) (they index U's columns)
        Y : (T, N) integer labels in [0, K) for cross_entropy; (T, N, K) floats for squared_error
        h0 : (N, H) array or None (zeros); for the LSTM a tuple ``(h0, c0)``, either part None
        truncate : None (full BPTT) or int k >= 0: each E_t flows back through k+1 steps (module docstring)
        mask : (T, N) booleans or None; a False step adds no loss and its target is ignored
        return_state : also return the final state, in the form ``h0`` accepts (to carry into the next chunk)
        workspace : a ``Workspace`` whose arrays the pass may reuse (for repeated calls), or None

        Returns
        -------
        ``(loss, grads)`` or ``(loss, grads, state)``; ``grads`` has the keys and shapes of ``params`` plus
        ``"h0" : (N, H)`` = dE/ds_0 (and ``"c0"`` for the LSTM), in the model's dtype.
        """
        X, is_ids, Y, state0, mask = self._check_all(X, Y, h0, mask)
        truncate = self._check_truncate(truncate)
        self._check_workspace(workspace)
        cache = self._forward(X, is_ids, state0, workspace)
        h = cache["h"]
        T, N, H = X.shape[0], X.shape[1], self.hidden_size
        E, dq, _ = self._loss_and_delta(self._logits(cache), Y, mask)
        K = self.output_size
        dq2 = dq.reshape(T * N, K)
        grads = {
            "V": dq2.T @ h[1:].reshape(T * N, H),  # (O5) sum_t dq_t^T h_t
            "c": dq2.sum(axis=0),  # (O5)
        }
        dh_out = np.matmul(dq2, self.params["V"], out=self._empty((T * N, H), workspace, "dh_out"))
        dh_out = dh_out.reshape(T, N, H)  # (B1) first path: E_t through V
        dG, dstate0 = self._bptt(cache, dh_out, truncate, workspace)
        grads.update(self._weight_grads(cache, dG))
        grads = {k: grads[k] for k in self.params}
        for part, d in zip(self.STATES, dstate0):
            grads[f"{part}0"] = d  # (B4)
        if not return_state:
            return E, grads
        return E, grads, self.public_state(tuple(part[T].copy() for part in self._states(cache)))

    def _bptt(self, cache, dh_out, truncate, workspace=None):
        """(B1, B2, TR): the gate deltas ``dG : (T, N, nG*H)`` and dE/d(initial state) for each state part."""
        T, N, H = dh_out.shape
        GH = self.GATES * H
        zeros = tuple(np.zeros((N, H), dtype=self.dtype) for _ in self.STATES)
        if truncate is None or truncate >= T - 1:  # full BPTT
            dG = self._empty((T, N, GH), workspace, "dG")
            dstate = zeros
            for s in range(T - 1, -1, -1):
                np.add(dstate[0], dh_out[s], out=dstate[0])  # (B1) dE/dh_t = dq_t V + dE/dh_t from step t+1
                dstate = self._step_back(s, s + 1, dstate, cache, dG[s])  # (B2)
            return dG, dstate
        # (TR) every E_t with t - l >= 1 sits at state j = t - l (array index j - 1); all step back together
        dG = np.zeros((T, N, GH), dtype=self.dtype)
        dstate0 = zeros
        dstate = (dh_out.reshape(T * N, H),)  # lag 0: each E_t at its own h_t; nothing yet on c_t
        dstate += tuple(np.zeros((T * N, H), dtype=self.dtype) for _ in self.STATES[1:])
        dG_rows = np.empty((T * N, GH), dtype=self.dtype)
        for lag in range(truncate + 1):
            M = T - lag  # sources j = 1..M
            dG_lag = dG_rows[: M * N]
            dprev = self._step_back(0, M, dstate, cache, dG_lag)  # (B2) steps j = 1..M, each E_t's own chain
            dG[:M] += dG_lag.reshape(M, N, GH)  # (B3) summed over the E_t whose window holds step j
            for d0, d in zip(dstate0, dprev):
                d0 += d[:N]  # (B4) the chains at j = 1 reach s_0 (t - k <= 1)
            dstate = tuple(d[N:] for d in dprev)  # states j - 1 >= 1 are the next lag's sources
        return dG, dstate0

    def _hidden_deltas(self, dG, cache):
        """dGh of (B3): the delta of ``W h_{t-1} [+ bh]``; equal to dG unless the cell says otherwise."""
        return dG

    def _weight_grads(self, cache, dG):
        """(B3) dU, db, dW [, dbh] as single products over all T*N rows, after the time loop."""
        X, h = cache["X"], cache["h"]
        T, N, GH = dG.shape
        H = self.hidden_size
        dG2 = dG.reshape(T * N, GH)
        grads = {}
        if cache["is_ids"]:
            dUT = np.zeros((self.input_size, GH), dtype=self.dtype)
            np.add.at(dUT, X.reshape(-1), dG2)  # (B3) dU[:, x] += dG_t for each token x
            grads["U"] = dUT.T.copy()
        else:
            # (B3) sum_t dG_t^T x_t, computed as (sum_t x_t^T dG_t)^T: OpenBLAS runs this layout of the
            # T*N-deep product faster (benchmarks/); the gradient is then a transposed (F-ordered) array
            grads["U"] = (X.reshape(T * N, -1).T @ dG2).T
        grads["b"] = dG2.sum(axis=0)  # (B3)
        dGh2 = self._hidden_deltas(dG, cache).reshape(T * N, GH)
        grads["W"] = (h[:-1].reshape(T * N, H).T @ dGh2).T  # (B3) sum_t dGh_t^T h_{t-1}, the same layout
        if self.HIDDEN_BIAS:
            grads["bh"] = dGh2.sum(axis=0)  # (B3)
        return grads

    # ------------------------------------------------------------------ forward mode
    def jvp(self, X, Y, tangents, h0=None, mask=None):
        """Forward-mode directional derivative of the loss through time, with no reverse pass.

        tangents : dict keyed like ``params``, optionally with ``"h0"`` (and ``"c0"``) ``(N, H)``.
        Returns ``(loss, dloss)`` with ``dloss = sum_k <dE/dtheta_k, tangents[k]>``.
        """
        X, is_ids, Y, state0, mask = self._check_all(X, Y, h0, mask)
        optional = tuple(f"{part}0" for part in self.STATES)
        tan = check_param_dict("tangents", {k: v for k, v in tangents.items() if k not in optional}
                               if isinstance(tangents, dict) else tangents, self.params, self.dtype)
        T, N, H = X.shape[0], X.shape[1], self.hidden_size
        dstate0 = []
        for key in optional:
            if key in tangents:
                dstate0.append(as_float_array(f"tangents[{key!r}]", tangents[key], self.dtype,
                                              (("N", N), ("H", H))))
            else:
                dstate0.append(np.zeros((N, H), dtype=self.dtype))
        cache = self._forward(X, is_ids, state0)
        h = cache["h"]
        dGx = self._project(X, is_ids, tan["U"], tan["b"])  # (J1) U' x_t + b'
        dGw = np.matmul(h[:-1].reshape(T * N, H), tan["W"].T).reshape(T, N, -1)  # (J1) W' h_{t-1}
        if self.HIDDEN_BIAS:
            dGw += tan["bh"]
        dstates = []
        for d0 in dstate0:
            dA = np.empty((T + 1, N, H), dtype=self.dtype)
            dA[0] = d0
            dstates.append(dA)
        for s in range(T):
            self._step_jvp(s, dGx[s], dGw[s], tuple(d[s] for d in dstates), cache,
                           tuple(d[s + 1] for d in dstates))  # (J2)
        q = self._logits(cache)
        E, dq, _ = self._loss_and_delta(q, Y, mask)
        dh = dstates[0]
        dq_tan = np.matmul(dh[1:].reshape(T * N, H), self.params["V"].T)  # V h'_t
        dq_tan += np.matmul(h[1:].reshape(T * N, H), tan["V"].T)  # V' h_t
        dq_tan += tan["c"]
        return E, float(np.sum(dq.reshape(T * N, -1) * dq_tan))  # (J3)

    def __repr__(self):
        return (
            f"{type(self).__name__}({self.input_size}, {self.hidden_size}, {self.output_size}, "
            f"loss={self.loss_name!r}, dtype={self.dtype.name})"
        )


def vanishing_gradients(model, X, Y, h0=None) -> dict:
    """The vanishing gradient, measured: ``||dE_T/ds_k||`` for k = 0..T.

    ``E_T`` is the loss at the last step alone, as a batch mean (1/N) sum_n E_{T,n}, with no mask; the norm
    is the Frobenius norm of the ``(N, H)`` gradient (for N = 1, the vector norm of one sequence's). The
    seed's product ``prod_{j=k+1..T} ds_j/ds_{j-1}`` is in there, and these norms show where it goes to 0.

    Returns a dict of ``(T+1,)`` float arrays indexed by k: ``"h"`` (dE_T/dh_k, the RNN's s_k) and, for the
    LSTM, ``"c"`` (dE_T/dc_k with h_k held fixed: the gradient that flows along the cell state, 0 at k = T).
    These are the gradients with respect to the state (h_k[, c_k]) that step k hands to step k+1, as
    ``retain_grad`` shows them on the state tensors of ``torch.nn.RNN/LSTM/GRU`` run one step at a time.
    """
    if not isinstance(model, Recurrent):
        raise TypeError(f"model must be an RNN, LSTM or GRU; got {type(model).__name__}")
    X, is_ids, Y, state0, _ = model._check_all(X, Y, h0, None)
    T, N, H = X.shape[0], X.shape[1], model.hidden_size
    cache = model._forward(X, is_ids, state0)
    q = model._logits(cache)[T - 1 : T]  # only step T
    _, dq, _ = model._loss_and_delta(q, Y[T - 1 : T], None)  # (O4) for E_T alone
    dstate = (np.matmul(dq[0], model.params["V"]),) + tuple(
        np.zeros((N, H), dtype=model.dtype) for _ in model.STATES[1:]
    )
    norms = {part: np.empty(T + 1) for part in model.STATES}
    dG = np.empty((N, model.GATES * H), dtype=model.dtype)
    for k in range(T, -1, -1):
        for part, d in zip(model.STATES, dstate):
            norms[part][k] = float(np.linalg.norm(d))
        if k > 0:
            dstate = model._step_back(k - 1, k, dstate, cache, dG)  # (B2) from state k to state k-1
    return norms
