"""Optimizers, learning-rate schedules and gradient clipping, equal to ``torch.optim`` step for step.

An optimizer holds the model's own ``params`` dict and updates its arrays in place from a ``grads`` dict with
the same keys (extra keys such as ``"X"``, ``"h0"`` or ``"c0"`` are ignored). Notation: theta one parameter
array, g its gradient (the batch mean, as ``loss_and_grad`` returns it), t = 1, 2, ... the step count,
eta the learning rate, lambda the weight decay.

Gradient clipping (optional; first, before weight decay; the caller's gradients are never changed):

    (CLIP1)  ||g|| = || (||g_1||_p, ..., ||g_n||_p) ||_p     norm of the per-array norms (max |g| for p = inf)
    (CLIP2)  g_k <- g_k * min(1, max_norm / (||g|| + 1e-6))   torch.nn.utils.clip_grad_norm_
    (CLIP3)  g_k <- min(max(g_k, -clip_value), clip_value)     torch.nn.utils.clip_grad_value_

SGD (``torch.optim.SGD``; mu momentum, tau dampening):

    (SGD1)  g <- g + lambda theta                              L2 weight decay
    (SGD2)  b_1 = g;   b_t = mu b_{t-1} + (1 - tau) g          momentum buffer (only when mu > 0)
    (SGD3)  d = g + mu b_t   (Nesterov)   or   d = b_t         (d = g when mu = 0: the seed's plain SGD)
    (SGD4)  theta <- theta - eta d

Adam (``torch.optim.Adam``; Kingma & Ba 2015, Algorithm 1) and AdamW (``torch.optim.AdamW``):

    (ADAM1)   g <- g + lambda theta                            Adam: L2 weight decay, part of the gradient
    (ADAM1w)  theta <- theta (1 - eta lambda)                  AdamW: decoupled decay (Loshchilov & Hutter)
    (ADAM2)   m_t = beta1 m_{t-1} + (1 - beta1) g              m_0 = 0
    (ADAM3)   v_t = beta2 v_{t-1} + (1 - beta2) g^2            v_0 = 0
    (ADAM4)   vmax_t = max(vmax_{t-1}, v_t)                    AMSGrad only; it replaces v_t in (ADAM5)
    (ADAM5)   theta <- theta - eta / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)

Learning-rate schedules (``step()`` once per epoch, after that epoch's updates, as in torch; e counts the
calls so far):

    (LR1)  StepLR:         eta_e = eta_0 gamma^floor(e / step_size)
    (LR2)  ExponentialLR:  eta_e = eta_0 gamma^e

Where clipping lives: an optimizer option (``SGD(..., clip_norm=1.0)``, ``clip_value=...``), applied inside
``step`` to the optimizer's own scratch copy of a gradient (and only when it clips: a gradient norm under
``clip_norm`` is used as it is), so ``loss_and_grad`` always returns the exact gradient and a checkpoint of
the optimizer records the clipping with the other hyper-parameters. ``clip_grad_norm`` and
``clip_grad_value`` are also public functions with torch's in-place semantics, for loops of your own.

State is explicit: ``opt.step_count`` (t) and ``opt.state`` (``{buffer name: {param name: array}}``, torch's
buffer names). ``state_dict()`` holds only NumPy arrays and plain Python scalars, so it fits in an ``.npz``
(``manual_bp.checkpoint``). Parameters keep their dtype: float32 parameters get float32 buffers and updates.

How a step runs (the cost of the arithmetic, nothing more): first every check (keys, shapes, dtypes, finite
gradients, the buffers' shapes and dtypes, the scalar coefficients), then the update, in place with ``out=``
arithmetic: the parameter arrays and the buffers in ``opt.state`` are allocated once and written every step,
never replaced, and so are the optimizer's private scratch arrays (two pieces of ``PIECE_BYTES`` per dtype;
the update runs over each parameter piece by piece so that its passes stay in the L2 cache). So a step that
raises has changed nothing (no parameter, buffer or ``step_count``). The update after the checks cannot
raise: it runs under ``np.errstate(all="ignore")``, so an overflow there writes inf as torch would, and the
next step's finiteness check reports it. A gradient that shares memory with a parameter or buffer (or has
another dtype, or is not C-contiguous) is first copied into the scratch, so the in-place order cannot read a
value it has already overwritten. (ADAM5) is evaluated as eta c / (1 - beta1^t) * m_t / (sqrt(v_t) + eps c),
c = sqrt(1 - beta2^t): the same number with one division by c fewer per entry (a few ulps from torch's
rounding, as torch's own order is from ours).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._validation import check_int

#: torch.nn.utils.clip_grad_norm_ adds this to the total norm before dividing (CLIP2)
CLIP_EPS = 1e-6

#: A step updates each parameter piece by piece, pieces of this many bytes, so that the passes of the update
#: (a dozen for Adam) over one piece find it in the core's L2 cache instead of streaming whole arrays from L3
#: or memory each time. Elementwise arithmetic: the pieces change no bit of the result.
PIECE_BYTES = 256 * 1024


# ---------------------------------------------------------------------------------------------- validation
def _check_real(name, value, minimum=None, maximum=None, open_min=False, open_max=False) -> float:
    """A finite real number (not bool) in the given range, returned as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    if minimum is not None and (value <= minimum if open_min else value < minimum):
        raise ValueError(f"{name} must be {'>' if open_min else '>='} {minimum}; got {value}")
    if maximum is not None and (value >= maximum if open_max else value > maximum):
        raise ValueError(f"{name} must be {'<' if open_max else '<='} {maximum}; got {value}")
    return value


def _check_bool(name, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {type(value).__name__} {value!r}")
    return bool(value)


def _check_norm_type(norm_type) -> float:
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real):
        raise TypeError(
            f"norm_type must be a real number or inf; got {type(norm_type).__name__} {norm_type!r}"
        )
    norm_type = float(norm_type)
    if math.isnan(norm_type) or norm_type <= 0:
        raise ValueError(f"norm_type must be > 0 (or inf); got {norm_type}")
    return norm_type


def _check_params(params) -> dict:
    """The model's own dict of writable float arrays (kept by reference: updates land in the model)."""
    if not isinstance(params, dict):
        raise TypeError(
            f"params must be a dict of parameter arrays (e.g. model.params); got {type(params).__name__}"
        )
    if not params:
        raise ValueError("params must hold at least one parameter array; got an empty dict")
    for k, p in params.items():
        if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
            what = p.dtype if isinstance(p, np.ndarray) else type(p).__name__
            raise TypeError(f"params[{k!r}] must be a float32 or float64 ndarray; got {what}")
        if not p.flags.writeable:
            raise ValueError(f"params[{k!r}] must be writable: the optimizer updates it in place")
    return params


def _check_grad_arrays(grads, keys=None) -> list:
    """Keys of ``grads`` to clip, each a writable float ndarray (the clip functions work in place)."""
    if not isinstance(grads, dict):
        raise TypeError(f"grads must be a dict of gradient arrays; got {type(grads).__name__}")
    keys = list(grads) if keys is None else list(keys)
    for k in keys:
        if k not in grads:
            raise ValueError(f"grads has no key {k!r}; it has {sorted(grads)}")
        g = grads[k]
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
            what = g.dtype if isinstance(g, np.ndarray) else type(g).__name__
            raise TypeError(f"grads[{k!r}] must be a float ndarray; got {what}")
        if not g.flags.writeable:
            raise ValueError(f"grads[{k!r}] must be writable: clipping works in place")
    return keys


def _first_nonfinite(grads, keys):
    for k in keys:
        g = grads[k]
        if not np.isfinite(g).all():
            i = tuple(int(j) for j in np.argwhere(~np.isfinite(g))[0])
            return k, i, g[i]
    return None


# ---------------------------------------------------------------------------------------------- clipping
def grad_norm(grads, norm_type=2.0, keys=None) -> float:
    """The total gradient norm (CLIP1) over ``grads[k]`` for ``k`` in ``keys`` (default: every key)."""
    keys = _check_grad_arrays(grads, keys)
    return _total_norm([grads[k] for k in keys], _check_norm_type(norm_type))


def _total_norm(arrays, p, sq=None) -> float:
    """(CLIP1) over ``arrays``; ``sq[i]``, where given, is ``arrays[i].ravel() @ arrays[i].ravel()``, which
    is what ``np.linalg.norm(a.ravel(), 2)`` takes the square root of (so reusing it changes no bit)."""
    if sq is not None and p == 2.0:
        norms = [np.sqrt(s) if a.size else 0.0 for a, s in zip(arrays, sq)]
    else:
        norms = [np.linalg.norm(a.ravel(), ord=p) if a.size else 0.0 for a in arrays]
    norms = np.array(norms)
    if norms.size == 0:
        return 0.0
    return float(np.linalg.norm(norms, ord=p))  # (CLIP1)


def clip_grad_norm(grads, max_norm, norm_type=2.0, keys=None) -> float:
    """Scale ``grads`` in place so that their total norm is at most ``max_norm``; return the norm before.

    ``torch.nn.utils.clip_grad_norm_`` semantics: one norm over all the arrays (CLIP1), scaled by
    ``min(1, max_norm / (total_norm + 1e-6))`` (CLIP2). ``keys`` limits the arrays (default: all of
    ``grads``).
    Unlike torch's default, a non-finite gradient raises ``ValueError`` and leaves ``grads`` unchanged.
    """
    keys = _check_grad_arrays(grads, keys)
    max_norm = _check_real("max_norm", max_norm, minimum=0.0, open_min=True)
    bad = _first_nonfinite(grads, keys)
    if bad is not None:
        raise ValueError(f"cannot clip a non-finite gradient: grads[{bad[0]!r}][{bad[1]}] = {bad[2]}")
    total_norm = grad_norm(grads, norm_type, keys)  # (CLIP1)
    coef = min(max_norm / (total_norm + CLIP_EPS), 1.0)  # (CLIP2)
    for k in keys:
        grads[k] *= coef  # (CLIP2)
    return total_norm


def clip_grad_value(grads, clip_value, keys=None) -> None:
    """Clamp every gradient entry to ``[-clip_value, clip_value]`` in place (CLIP3) (``clip_grad_value_``)."""
    keys = _check_grad_arrays(grads, keys)
    clip_value = _check_real("clip_value", clip_value, minimum=0.0, open_min=True)
    for k in keys:
        np.clip(grads[k], -clip_value, clip_value, out=grads[k])  # (CLIP3)


# ---------------------------------------------------------------------------------------------- optimizers
class Optimizer:
    """Base class: validation, clipping, the step counter, scratch arrays, state_dict/load_state_dict.

    A step has two phases. ``_prepare(t)`` (subclasses) checks the buffers and allocates missing ones, and
    returns a plan: the scalar coefficients and ``plan["buffers"][k]``, the tuple of buffers of parameter k;
    it writes nothing the caller can see. Then ``_update(plan, k, theta, g, buffers, work, spare)``
    (subclasses) updates one piece ``theta`` of a parameter and the same pieces of its buffers in place, from
    the same piece ``g`` of its gradient (read only, unless it is ``spare``, where clipping puts it); ``work``
    and ``spare`` are scratch arrays of the piece's shape and dtype. It must not raise.
    """

    buffer_names: tuple = ()

    def __init__(self, params, lr, clip_norm=None, clip_value=None, norm_type=2.0):
        self.params = _check_params(params)
        self.lr = lr
        self.clip_norm = (
            None if clip_norm is None else _check_real("clip_norm", clip_norm, 0.0, open_min=True)
        )
        self.clip_value = (
            None if clip_value is None else _check_real("clip_value", clip_value, 0.0, open_min=True)
        )
        self.norm_type = _check_norm_type(norm_type)
        self.step_count = 0  # t: the number of steps taken
        self.state = {name: {} for name in self.buffer_names}
        # private scratch, allocated at first need and reused by every step:
        self._piece_scratch = {}  # {dtype: (work, spare)}, one piece each (PIECE_BYTES)
        self._grad_copy = {}  # {param name: array}, a gradient copied (other dtype, memory shared, strides)
        self._whole_scratch = {}  # {param name: (work, spare)}, for a parameter that is not C-contiguous

    @property
    def lr(self) -> float:
        """The learning rate eta (a schedule sets it between epochs)."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _check_real("lr", value, minimum=0.0)

    # -------------------------------------------------------------- the public step
    def step(self, grads) -> None:
        """One update of every parameter from ``grads`` (a dict with at least the keys of ``params``).

        Everything is checked before the first write; a step that raises has changed nothing.
        """
        items, sq = self._check_grads(grads)  # [(k, theta, g)], g C-contiguous in theta's dtype
        coef = None
        if self.clip_norm is not None:
            total_norm = _total_norm([g for _, _, g in items], self.norm_type, sq)  # (CLIP1)
            coef = min(self.clip_norm / (total_norm + CLIP_EPS), 1.0)  # (CLIP2)
            if coef == 1.0:  # under the threshold: g * 1 = g, so no copy
                coef = None
        clip_value = self.clip_value
        t = self.step_count + 1
        plan = self._prepare(t)
        pieces = self._pieces(items, plan["buffers"])  # views and scratch, allocated here
        update = self._update
        # ---- commit: nothing above wrote to params, buffers or step_count; nothing below can raise
        with np.errstate(all="ignore"):
            for k, theta, g, buffers, work, spare in pieces:
                if coef is not None:
                    g = np.multiply(g, coef, out=spare)  # (CLIP2) into the scratch: the caller's g stays
                if clip_value is not None:
                    g = np.clip(g, -clip_value, clip_value, out=spare)  # (CLIP3)
                update(plan, k, theta, g, buffers, work, spare)
        self._commit(plan)
        self.step_count = t

    def _pieces(self, items, buffers) -> list:
        """``[(k, theta, g, buffers, work, spare)]``, the pieces of the update in order: flat views of at most
        ``PIECE_BYTES`` where theta and its buffers are C-contiguous (g always is), with the optimizer's
        scratch of one piece per dtype; else the whole arrays with scratch of their shape. Allocates the
        scratch that is missing; writes nothing else."""
        pieces = []
        for k, theta, g in items:
            bufs = buffers[k]
            if theta.flags.c_contiguous and all(b.flags.c_contiguous for b in bufs):
                n, n_piece = theta.size, max(1, PIECE_BYTES // theta.itemsize)
                work, spare = self._piece_scratch.get(theta.dtype, (None, None))
                if work is None or work.size < min(n_piece, n):
                    size = min(n_piece, max(p.size for p in self.params.values() if p.dtype == theta.dtype))
                    work, spare = np.empty(size, theta.dtype), np.empty(size, theta.dtype)
                    self._piece_scratch[theta.dtype] = work, spare
                theta, g, bufs = theta.reshape(-1), g.reshape(-1), [b.reshape(-1) for b in bufs]
                if n <= n_piece:
                    pieces.append((k, theta, g, bufs, work[:n], spare[:n]))
                    continue
                for s in range(0, n, n_piece):
                    e = min(s + n_piece, n)
                    pieces.append(
                        (k, theta[s:e], g[s:e], [b[s:e] for b in bufs], work[: e - s], spare[: e - s])
                    )
            else:
                work, spare = self._whole_scratch.get(k, (None, None))
                if work is None or work.shape != theta.shape or work.dtype != theta.dtype:
                    work, spare = self._whole_scratch[k] = (np.empty_like(theta), np.empty_like(theta))
                pieces.append((k, theta, g, bufs, work, spare))
        return pieces

    def _check_grads(self, grads) -> tuple:
        """``(items, sq)``: ``items = [(k, theta, g)]``, every check of a step's gradients, and ``sq =
        [g.ravel() @ g.ravel()]``.

        ``g`` is checked (shape, dtype, finite), C-contiguous and in theta's dtype: the caller's own array
        where it may be read as it is (it is never written), else a copy in the optimizer's scratch. ``sq``
        is the finiteness check and (CLIP1)'s 2-norm in one pass: it is finite unless g has a nan or an inf
        (or its squares overflow: then the exact check decides).
        """
        if not isinstance(grads, dict):
            raise TypeError(f"grads must be a dict of arrays keyed like params; got {type(grads).__name__}")
        missing = [k for k in self.params if k not in grads]
        if missing:
            raise ValueError(
                f"grads must have a key for every parameter {sorted(self.params)}; missing {missing}"
            )
        # The update writes params and buffers in place, one parameter after another, and may read g after
        # writing them: a gradient that shares memory with any of them is read from a copy.
        written = [p for p in self.params.values() if isinstance(p, np.ndarray)]
        written += [a for bufs in self.state.values() for a in bufs.values() if isinstance(a, np.ndarray)]
        roots = {id(a) if a.base is None else id(a.base) for a in written}
        items, sq = [], []
        # the check's inf or nan (and a cast's overflow) are answers here, not warnings
        with np.errstate(over="ignore", invalid="ignore"):
            for k, p in self.params.items():
                if not isinstance(p, np.ndarray) or not p.flags.writeable:
                    raise ValueError(f"params[{k!r}] is no longer a writable array; got {type(p).__name__}")
                g = grads[k]
                if type(g) is not np.ndarray:
                    g = np.asarray(g)
                if g.dtype.kind not in "fiu":
                    raise TypeError(f"grads[{k!r}] must be a real numeric array; got dtype {g.dtype}")
                if g.shape != p.shape:
                    raise ValueError(
                        f"grads[{k!r}] must have the shape of params[{k!r}], {p.shape}; got {g.shape}"
                    )
                given = g
                shared = (id(g) if g.base is None else id(g.base)) in roots and any(
                    np.may_share_memory(g, a) for a in written
                )
                if shared or g.dtype != p.dtype or not g.flags.c_contiguous:
                    g = self._grad_copy.get(k)
                    if g is None or g.shape != p.shape or g.dtype != p.dtype:
                        g = self._grad_copy[k] = np.empty(p.shape, p.dtype)
                    np.copyto(g, given, casting="unsafe")  # as given.astype(p.dtype)
                r = g.reshape(-1)
                s = r.dot(r)
                if not math.isfinite(s) and not np.isfinite(g).all():
                    i = tuple(int(j) for j in np.argwhere(~np.isfinite(g))[0])
                    got = f"{g[i]} at index {i}"
                    if np.isfinite(given[i]):
                        got = (
                            f"{given[i]} at index {i}, which overflows {p.dtype}, the dtype of params[{k!r}]"
                        )
                    raise ValueError(f"grads[{k!r}] must be finite; got {got} (no parameter was changed)")
                items.append((k, p, g))
                sq.append(s)
        return items, sq

    def _buffers(self, name) -> dict:
        """``{k: self.state[name][k] or None}`` for every parameter, each checked against ``params[k]``."""
        bufs = self.state.get(name) or {}
        out = {}
        for k, p in self.params.items():
            a = out[k] = bufs.get(k)
            if a is None:
                continue
            if type(a) is not np.ndarray or a.shape != p.shape or a.dtype != p.dtype or not a.flags.writeable:
                what = f"shape {a.shape}, dtype {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
                raise ValueError(
                    f"state[{name!r}][{k!r}] must be a writable array of shape {p.shape} and dtype {p.dtype} "
                    f"like params[{k!r}]; got {what} (no parameter was changed)"
                )
        return out

    def _prepare(self, t) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _update(self, plan, k, theta, g, buffers, work, spare) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _commit(self, plan) -> None:
        """After every parameter is updated: record buffers that the step created (default: none)."""

    # -------------------------------------------------------------- hyper-parameters and state
    def config(self) -> dict:
        """The constructor's keyword arguments (plain Python scalars; ``lr`` is the current one)."""
        return {
            "lr": self.lr,
            "clip_norm": self.clip_norm,
            "clip_value": self.clip_value,
            "norm_type": self.norm_type,
        }

    def state_dict(self) -> dict:
        """``{"config": dict of scalars, "step_count": int, "state": {buffer: {param: array copy}}}``."""
        return {
            "config": self.config(),
            "step_count": self.step_count,
            "state": {b: {k: v.copy() for k, v in bufs.items()} for b, bufs in self.state.items()},
        }

    def _expected_buffers(self, config, step_count) -> tuple:
        """Buffer names a state with these hyper-parameters and this step count must hold."""
        return self.buffer_names

    def load_state_dict(self, state_dict) -> None:
        """Restore hyper-parameters, step count and buffers, all validated before anything changes.

        Buffers must have exactly the keys, shapes and dtypes of ``params``.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict; got {type(state_dict).__name__}")
        expected = {"config", "step_count", "state"}
        if set(state_dict) != expected:
            raise ValueError(f"state_dict must have keys {sorted(expected)}; got {sorted(state_dict)}")
        config = state_dict["config"]
        if not isinstance(config, dict):
            raise TypeError(f"state_dict['config'] must be a dict; got {type(config).__name__}")
        mine = self.config()
        if set(config) != set(mine):
            raise ValueError(
                f"state_dict['config'] of {type(self).__name__} must have keys {sorted(mine)}; "
                f"got {sorted(config)}"
            )
        fresh = type(self)(self.params, **config)  # validates every hyper-parameter
        step_count = check_int("state_dict['step_count']", state_dict["step_count"], minimum=0)
        state = state_dict["state"]
        if not isinstance(state, dict):
            raise TypeError(f"state_dict['state'] must be a dict; got {type(state).__name__}")
        names = fresh._expected_buffers(config, step_count)
        if set(state) != set(names):
            raise ValueError(
                f"state_dict['state'] of {type(self).__name__}({config}) after {step_count} steps must hold "
                f"buffers {sorted(names)}; got {sorted(state)}"
            )
        new_state = {}
        for b in names:
            bufs = state[b]
            if not isinstance(bufs, dict) or set(bufs) != set(self.params):
                got = sorted(bufs) if isinstance(bufs, dict) else type(bufs).__name__
                raise ValueError(
                    f"state_dict['state'][{b!r}] must have keys {sorted(self.params)}; got {got}"
                )
            new_state[b] = {}
            for k, p in self.params.items():
                arr = bufs[k]
                where = f"state_dict['state'][{b!r}][{k!r}]"
                if not isinstance(arr, np.ndarray):
                    raise TypeError(f"{where} must be an ndarray; got {type(arr).__name__}")
                if arr.shape != p.shape or arr.dtype != p.dtype:
                    raise ValueError(
                        f"{where} must have shape {p.shape} and dtype {p.dtype} like params[{k!r}]; "
                        f"got shape {arr.shape}, dtype {arr.dtype}"
                    )
                if not np.isfinite(arr).all():
                    raise ValueError(f"{where} must be finite")
                new_state[b][k] = arr.copy()
        for name, value in vars(fresh).items():  # commit
            if name not in ("params", "state", "step_count"):
                setattr(self, name, value)
        self.state = new_state
        self.step_count = step_count

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and weight decay.

    ``torch.optim.SGD`` semantics (SGD1-SGD4); with the defaults it is the seed's rule ``theta -= eta g``.
    ``nesterov`` needs ``momentum > 0`` and ``dampening == 0`` (as torch).
    """

    buffer_names = ("momentum_buffer",)

    def __init__(
        self,
        params,
        lr,
        momentum=0.0,
        dampening=0.0,
        weight_decay=0.0,
        nesterov=False,
        clip_norm=None,
        clip_value=None,
        norm_type=2.0,
    ):
        self.momentum = _check_real("momentum", momentum, minimum=0.0)
        self.dampening = _check_real("dampening", dampening, minimum=0.0, maximum=1.0)
        self.weight_decay = _check_real("weight_decay", weight_decay, minimum=0.0)
        self.nesterov = _check_bool("nesterov", nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"nesterov=True needs momentum > 0 and dampening == 0; got momentum={self.momentum}, "
                f"dampening={self.dampening}"
            )
        super().__init__(params, lr, clip_norm, clip_value, norm_type)
        self.state = {}  # the momentum buffer appears at the first step (SGD2), as in torch

    def config(self) -> dict:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "dampening": self.dampening,
            "weight_decay": self.weight_decay,
            "nesterov": self.nesterov,
            **{k: v for k, v in super().config().items() if k != "lr"},
        }

    def _expected_buffers(self, config, step_count) -> tuple:
        # torch creates the buffer at the first step (SGD2), and only with momentum
        return ("momentum_buffer",) if self.momentum != 0 and step_count > 0 else ()

    def _prepare(self, t) -> dict:
        plan = {
            "eta": float(self.lr),
            "mu": float(self.momentum),
            "one_minus_tau": 1.0 - float(self.dampening),
            "lam": float(self.weight_decay),
            "nesterov": bool(self.nesterov),
            "buffers": {k: () for k in self.params},
            "fresh": set(),
        }
        if plan["mu"] != 0:
            for (k, p), b in zip(self.params.items(), self._buffers("momentum_buffer").values()):
                if b is None:  # the first step with momentum: b_1 = g (SGD2)
                    b = np.empty_like(p, order="C")
                    plan["fresh"].add(k)
                plan["buffers"][k] = (b,)
        return plan

    def _update(self, plan, k, theta, g, buffers, work, spare) -> None:
        mu, lam = plan["mu"], plan["lam"]
        d = g
        if lam != 0:
            d = np.add(np.multiply(theta, lam, out=work), d, out=work)  # (SGD1) g + lambda theta
        if mu != 0:
            (b,) = buffers
            T = spare if d is work else work  # a scratch array that is not d
            if k in plan["fresh"]:
                np.copyto(b, d)  # (SGD2) b_1 = g
            else:  # with tau = 0, (1 - tau) g = g exactly: the product is skipped
                damped = d if plan["one_minus_tau"] == 1.0 else np.multiply(d, plan["one_minus_tau"], out=T)
                b *= mu
                b += damped  # (SGD2)
            if plan["nesterov"]:
                d = np.add(np.multiply(b, mu, out=T), d, out=T)  # (SGD3) g + mu b
            else:
                d = b  # (SGD3)
        if d is work or d is spare:
            d *= plan["eta"]
        else:  # the caller's gradient, its copy or the momentum buffer: read only
            d = np.multiply(d, plan["eta"], out=work)
        theta -= d  # (SGD4)

    def _commit(self, plan) -> None:
        if plan["mu"] == 0:
            if self.state:  # momentum set to 0 after steps with it: no buffer, as a fresh SGD(momentum=0)
                self.state = {}
        elif "momentum_buffer" not in self.state:
            self.state["momentum_buffer"] = {k: b for k, (b,) in plan["buffers"].items()}
        else:
            self.state["momentum_buffer"].update((k, plan["buffers"][k][0]) for k in plan["fresh"])


class Adam(Optimizer):
    """Adam with bias correction, torch's L2 ``weight_decay`` (ADAM1) and optional AMSGrad (ADAM4).

    ``torch.optim.Adam`` semantics (ADAM1-ADAM5). For decoupled weight decay use ``AdamW``.
    """

    buffer_names = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        clip_norm=None,
        clip_value=None,
        norm_type=2.0,
    ):
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2); got {betas!r}")
        self.betas = (
            _check_real("betas[0]", betas[0], minimum=0.0, maximum=1.0, open_max=True),
            _check_real("betas[1]", betas[1], minimum=0.0, maximum=1.0, open_max=True),
        )
        self.eps = _check_real("eps", eps, minimum=0.0)
        self.weight_decay = _check_real("weight_decay", weight_decay, minimum=0.0)
        self.amsgrad = _check_bool("amsgrad", amsgrad)
        super().__init__(params, lr, clip_norm, clip_value, norm_type)
        self.state = self._zero_state()

    def _zero_state(self) -> dict:
        names = self.buffer_names + (("max_exp_avg_sq",) if self.amsgrad else ())
        return {b: {k: np.zeros_like(p) for k, p in self.params.items()} for b in names}

    def config(self) -> dict:
        return {
            "lr": self.lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "amsgrad": self.amsgrad,
            **{k: v for k, v in super().config().items() if k != "lr"},
        }

    def _expected_buffers(self, config, step_count) -> tuple:
        return self.buffer_names + (("max_exp_avg_sq",) if self.amsgrad else ())

    def _prepare(self, t) -> dict:
        beta1, beta2 = (float(b) for b in self.betas)
        eta, lam = float(self.lr), float(self.weight_decay)
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**t)
        plan = {
            "lam": lam,
            "decay": 1.0 - eta * lam,  # (ADAM1w)
            "decoupled": bool(self.decoupled),
            "beta1": beta1,
            "one_minus_beta1": 1.0 - beta1,
            "beta2": beta2,
            "one_minus_beta2": 1.0 - beta2,
            # (ADAM5) as eta c / (1 - beta1^t) * m_t / (sqrt(v_t) + eps c), c = sqrt(1 - beta2^t)
            "eps_c": float(self.eps) * bias_correction2_sqrt,
            "step_size_c": eta / (1.0 - beta1**t) * bias_correction2_sqrt,
            "amsgrad": bool(self.amsgrad),
        }
        names = self.buffer_names + (("max_exp_avg_sq",) if plan["amsgrad"] else ())
        columns = [self._buffers(name) for name in names]
        for name, column in zip(names, columns):
            missing = [k for k, a in column.items() if a is None]
            if missing:
                raise ValueError(
                    f"state[{name!r}] has no array for params {missing} (an {type(self).__name__} with "
                    f"amsgrad={plan['amsgrad']} keeps {list(names)}); no parameter was changed"
                )
        plan["buffers"] = {k: tuple(column[k] for column in columns) for k in self.params}
        return plan

    def _update(self, plan, k, theta, g, buffers, work, spare) -> None:
        m, v, *vmax = buffers
        lam = plan["lam"]
        if lam != 0 and not plan["decoupled"]:
            g = np.add(np.multiply(theta, lam, out=work), g, out=work)  # (ADAM1) g + lambda theta
        T = spare if g is work else work  # a scratch array that is not g
        m *= plan["beta1"]
        m += np.multiply(g, plan["one_minus_beta1"], out=T)  # (ADAM2)
        np.multiply(g, g, out=T)
        T *= plan["one_minus_beta2"]
        v *= plan["beta2"]
        v += T  # (ADAM3)
        if vmax:
            v = np.maximum(vmax[0], v, out=vmax[0])  # (ADAM4)
        denom = np.sqrt(v, out=T)
        denom += plan["eps_c"]  # (ADAM5) (sqrt(v_t) / c + eps) c
        update = np.divide(m, denom, out=T)
        update *= plan["step_size_c"]  # (ADAM5) eta / (1 - beta1^t) * m_t / (sqrt(v_t) / c + eps)
        if lam != 0 and plan["decoupled"]:
            theta *= plan["decay"]  # (ADAM1w)
        theta -= update  # (ADAM5)


class AdamW(Adam):
    """Adam with decoupled weight decay (ADAM1w), ``torch.optim.AdamW`` semantics (default decay 1e-2)."""

    decoupled = True

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        clip_norm=None,
        clip_value=None,
        norm_type=2.0,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, clip_norm, clip_value, norm_type)



# ---------------------------------------------------------------------------------------------- schedules
class LRScheduler:
    """Base class: ``step()`` once per epoch sets ``optimizer.lr = get_lr()`` from ``base_lr`` and the count.

    State is explicit: ``base_lr`` (eta_0, the optimizer's lr when the schedule was made) and ``last_epoch``
    (e, the number of ``step()`` calls so far). The learning rate is a closed form of the two, so a loaded
    schedule continues exactly.
    """

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a manual_bp.optim optimizer; got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def get_lr(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch and set the optimizer's learning rate."""
        self.last_epoch += 1
        self.optimizer.lr = self.get_lr()

    def config(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"config": self.config(), "base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict) -> None:
        """Restore ``base_lr``, ``last_epoch`` and the hyper-parameters (the optimizer keeps its own lr)."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict; got {type(state_dict).__name__}")
        expected = {"config", "base_lr", "last_epoch"}
        if set(state_dict) != expected:
            raise ValueError(f"state_dict must have keys {sorted(expected)}; got {sorted(state_dict)}")
        config = state_dict["config"]
        if not isinstance(config, dict) or set(config) != set(self.config()):
            got = sorted(config) if isinstance(config, dict) else type(config).__name__
            raise ValueError(f"state_dict['config'] must have keys {sorted(self.config())}; got {got}")
        fresh = type(self)(self.optimizer, **config)
        base_lr = _check_real("state_dict['base_lr']", state_dict["base_lr"], minimum=0.0)
        last_epoch = check_int("state_dict['last_epoch']", state_dict["last_epoch"], minimum=0)
        for name, value in vars(fresh).items():
            setattr(self, name, value)
        self.base_lr, self.last_epoch = base_lr, last_epoch

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args}, base_lr={self.base_lr!r}, last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs (LR1), as torch's ``StepLR``."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = check_int("step_size", step_size, minimum=1)
        self.gamma = _check_real("gamma", gamma, minimum=0.0, open_min=True)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        return self.base_lr * self.gamma ** (self.last_epoch // self.step_size)  # (LR1)

    def config(self) -> dict:
        return {"step_size": self.step_size, "gamma": self.gamma}


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every epoch (LR2), as torch's ``ExponentialLR``."""

    def __init__(self, optimizer, gamma):
        self.gamma = _check_real("gamma", gamma, minimum=0.0, open_min=True)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        return self.base_lr * self.gamma**self.last_epoch  # (LR2)

    def config(self) -> dict:
        return {"gamma": self.gamma}

