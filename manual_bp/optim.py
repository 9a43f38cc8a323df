"""Optimizers, learning-rate schedules and gradient clipping, equal to ``torch.optim`` step for step.

An optimizer holds the model's own ``params`` dict and updates its arrays in place from a ``grads`` dict with
the same keys (extra keys such as ``"X"``, ``"h0"`` or ``"c0"`` are ignored). Notation: theta one parameter
array, g its gradient (the batch mean, as ``loss_and_grad`` returns it), t = 1, 2, ... the step count,
eta the learning rate, lambda the weight decay.

Gradient clipping (optional; first, on a copy of the parameter gradients, before weight decay):

    (C1)  ||g|| = || (||g_1||_p, ..., ||g_n||_p) ||_p       norm of the per-array norms (max |g| for p = inf)
    (C2)  g_k <- g_k * min(1, max_norm / (||g|| + 1e-6))     torch.nn.utils.clip_grad_norm_
    (C3)  g_k <- min(max(g_k, -clip_value), clip_value)       torch.nn.utils.clip_grad_value_

SGD (``torch.optim.SGD``; mu momentum, tau dampening):

    (S1)  g <- g + lambda theta                               L2 weight decay
    (S2)  b_1 = g;   b_t = mu b_{t-1} + (1 - tau) g           momentum buffer (only when mu > 0)
    (S3)  d = g + mu b_t   (Nesterov)   or   d = b_t          (d = g when mu = 0: the seed's plain SGD)
    (S4)  theta <- theta - eta d

Adam (``torch.optim.Adam``; Kingma & Ba 2015, Algorithm 1) and AdamW (``torch.optim.AdamW``):

    (A1)  g <- g + lambda theta                               Adam: L2 weight decay, part of the gradient
    (A1w) theta <- theta (1 - eta lambda)                     AdamW: decoupled decay (Loshchilov & Hutter)
    (A2)  m_t = beta1 m_{t-1} + (1 - beta1) g                 m_0 = 0
    (A3)  v_t = beta2 v_{t-1} + (1 - beta2) g^2               v_0 = 0
    (A4)  vmax_t = max(vmax_{t-1}, v_t)                       AMSGrad only; it replaces v_t in (A5)
    (A5)  theta <- theta - eta / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)

Learning-rate schedules (``step()`` once per epoch, after that epoch's updates, as in torch; e counts the
calls so far):

    (L1)  StepLR:         eta_e = eta_0 gamma^floor(e / step_size)
    (L2)  ExponentialLR:  eta_e = eta_0 gamma^e

Where clipping lives: an optimizer option (``SGD(..., clip_norm=1.0)``, ``clip_value=...``), applied inside
``step`` to a copy of the gradients, so ``loss_and_grad`` always returns the exact gradient and a checkpoint
of the optimizer records the clipping with the other hyper-parameters. ``clip_grad_norm`` and
``clip_grad_value`` are also public functions with torch's in-place semantics, for loops of your own.

State is explicit: ``opt.step_count`` (t) and ``opt.state`` (``{buffer name: {param name: array}}``, torch's
buffer names). ``state_dict()`` holds only NumPy arrays and plain Python scalars, so it fits in an ``.npz``
(``manual_bp.checkpoint``). Parameters keep their dtype: float32 parameters get float32 buffers and updates.
A step that fails validation (missing key, wrong shape, non-finite gradient) changes nothing.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._validation import check_int

#: torch.nn.utils.clip_grad_norm_ adds this to the total norm before dividing (C2)
CLIP_EPS = 1e-6


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
    """The total gradient norm (C1) over ``grads[k]`` for ``k`` in ``keys`` (default: every key)."""
    keys = _check_grad_arrays(grads, keys)
    p = _check_norm_type(norm_type)
    norms = np.array([np.linalg.norm(grads[k].ravel(), ord=p) if grads[k].size else 0.0 for k in keys])
    if norms.size == 0:
        return 0.0
    return float(np.linalg.norm(norms, ord=p))  # (C1)


def clip_grad_norm(grads, max_norm, norm_type=2.0, keys=None) -> float:
    """Scale ``grads`` in place so that their total norm is at most ``max_norm``; return the norm before.

    ``torch.nn.utils.clip_grad_norm_`` semantics: one norm over all the arrays (C1), scaled by
    ``min(1, max_norm / (total_norm + 1e-6))`` (C2). ``keys`` limits the arrays (default: all of ``grads``).
    Unlike torch's default, a non-finite gradient raises ``ValueError`` and leaves ``grads`` unchanged.
    """
    keys = _check_grad_arrays(grads, keys)
    max_norm = _check_real("max_norm", max_norm, minimum=0.0, open_min=True)
    bad = _first_nonfinite(grads, keys)
    if bad is not None:
        raise ValueError(f"cannot clip a non-finite gradient: grads[{bad[0]!r}][{bad[1]}] = {bad[2]}")
    total_norm = grad_norm(grads, norm_type, keys)  # (C1)
    coef = min(max_norm / (total_norm + CLIP_EPS), 1.0)  # (C2)
    for k in keys:
        grads[k] *= coef  # (C2)
    return total_norm


def clip_grad_value(grads, clip_value, keys=None) -> None:
    """Clamp every gradient entry to ``[-clip_value, clip_value]`` in place (C3), as ``clip_grad_value_``."""
    keys = _check_grad_arrays(grads, keys)
    clip_value = _check_real("clip_value", clip_value, minimum=0.0, open_min=True)
    for k in keys:
        np.clip(grads[k], -clip_value, clip_value, out=grads[k])  # (C3)


# ---------------------------------------------------------------------------------------------- optimizers
class Optimizer:
    """Base class: validation, clipping, the step counter, state_dict/load_state_dict.

    Subclasses set ``buffer_names`` and implement ``_update(g, t) -> (new_params, new_state)``, a pure
    function of the current params, ``self.state`` and the gradients ``g`` (already clipped), so that a step
    is computed in full before anything is written.
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

    @property
    def lr(self) -> float:
        """The learning rate eta (a schedule sets it between epochs)."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _check_real("lr", value, minimum=0.0)

    # -------------------------------------------------------------- the public step
    def step(self, grads) -> None:
        """One update of every parameter from ``grads`` (a dict with at least the keys of ``params``)."""
        g = self._check_grads(grads)  # copies, in each parameter's dtype
        if self.clip_norm is not None:
            clip_grad_norm(g, self.clip_norm, self.norm_type)  # (C1, C2)
        if self.clip_value is not None:
            clip_grad_value(g, self.clip_value)  # (C3)
        t = self.step_count + 1
        new_params, new_state = self._update(g, t)
        for k, value in new_params.items():  # commit: nothing above wrote to params or state
            self.params[k][...] = value
        self.state = new_state
        self.step_count = t

    def _check_grads(self, grads) -> dict:
        if not isinstance(grads, dict):
            raise TypeError(f"grads must be a dict of arrays keyed like params; got {type(grads).__name__}")
        missing = [k for k in self.params if k not in grads]
        if missing:
            raise ValueError(
                f"grads must have a key for every parameter {sorted(self.params)}; missing {missing}"
            )
        out = {}
        for k, p in self.params.items():
            if not isinstance(p, np.ndarray) or not p.flags.writeable:
                raise ValueError(f"params[{k!r}] is no longer a writable array; got {type(p).__name__}")
            g = np.asarray(grads[k])
            if g.dtype.kind not in "fiu" or g.dtype == np.bool_:
                raise TypeError(f"grads[{k!r}] must be a real numeric array; got dtype {g.dtype}")
            if g.shape != p.shape:
                raise ValueError(
                    f"grads[{k!r}] must have the shape of params[{k!r}], {p.shape}; got {g.shape}"
                )
            g = g.astype(p.dtype, copy=True)
            if not np.isfinite(g).all():
                i = tuple(int(j) for j in np.argwhere(~np.isfinite(g))[0])
                raise ValueError(
                    f"grads[{k!r}] must be finite; got {g[i]} at index {i} (no parameter was changed)"
                )
            out[k] = g
        return out

    def _update(self, g, t):  # pragma: no cover - abstract
        raise NotImplementedError

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

    ``torch.optim.SGD`` semantics (S1-S4); with the defaults it is the seed's rule ``theta -= eta g``.
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
        self.state = {}  # the momentum buffer appears at the first step (S2), as in torch

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
        # torch creates the buffer at the first step (S2), and only with momentum
        return ("momentum_buffer",) if self.momentum != 0 and step_count > 0 else ()

    def _update(self, g, t):
        eta, mu, tau, lam = self.lr, self.momentum, self.dampening, self.weight_decay
        new_params, buffers = {}, {}
        for k, theta in self.params.items():
            d = g[k]
            if lam != 0:
                d = d + lam * theta  # (S1)
            if mu != 0:
                prev = self.state.get("momentum_buffer", {}).get(k)
                if prev is None:
                    b = d.copy()  # (S2) b_1 = g: the first step with momentum
                else:
                    b = mu * prev + (1 - tau) * d  # (S2)
                buffers[k] = b
                d = d + mu * b if self.nesterov else b  # (S3)
            new_params[k] = theta - eta * d  # (S4)
        return new_params, ({"momentum_buffer": buffers} if mu != 0 else {})


class Adam(Optimizer):
    """Adam with bias correction, torch's L2 ``weight_decay`` (A1) and optional AMSGrad (A4).

    ``torch.optim.Adam`` semantics (A1-A5). For decoupled weight decay use ``AdamW``.
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

    def _update(self, g, t):
        eta, lam, eps = self.lr, self.weight_decay, self.eps
        beta1, beta2 = self.betas
        bias_correction1 = 1 - beta1**t
        bias_correction2_sqrt = math.sqrt(1 - beta2**t)
        step_size = eta / bias_correction1
        new_params = {}
        state = {b: {} for b in self.state}
        for k, theta in self.params.items():
            gk = g[k]
            if lam != 0:
                if self.decoupled:
                    theta = theta * (1 - eta * lam)  # (A1w)
                else:
                    gk = gk + lam * theta  # (A1)
            m = beta1 * self.state["exp_avg"][k] + (1 - beta1) * gk  # (A2)
            v = beta2 * self.state["exp_avg_sq"][k] + (1 - beta2) * (gk * gk)  # (A3)
            state["exp_avg"][k], state["exp_avg_sq"][k] = m, v
            if self.amsgrad:
                v = np.maximum(self.state["max_exp_avg_sq"][k], v)  # (A4)
                state["max_exp_avg_sq"][k] = v
            denom = np.sqrt(v) / bias_correction2_sqrt + eps  # (A5)
            new_params[k] = theta - step_size * (m / denom)  # (A5)
        return new_params, state


class AdamW(Adam):
    """Adam with decoupled weight decay (A1w), ``torch.optim.AdamW`` semantics (default decay 1e-2)."""

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


OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}


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
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs (L1), as torch's ``StepLR``."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = check_int("step_size", step_size, minimum=1)
        self.gamma = _check_real("gamma", gamma, minimum=0.0, open_min=True)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        return self.base_lr * self.gamma ** (self.last_epoch // self.step_size)  # (L1)

    def config(self) -> dict:
        return {"step_size": self.step_size, "gamma": self.gamma}


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every epoch (L2), as torch's ``ExponentialLR``."""

    def __init__(self, optimizer, gamma):
        self.gamma = _check_real("gamma", gamma, minimum=0.0, open_min=True)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        return self.base_lr * self.gamma**self.last_epoch  # (L2)

    def config(self) -> dict:
        return {"gamma": self.gamma}


SCHEDULERS = {"StepLR": StepLR, "ExponentialLR": ExponentialLR}
