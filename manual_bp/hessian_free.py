"""Hessian-free optimisation (Martens 2010): truncated conjugate gradient on the damped Gauss-Newton model.

At the current parameters theta (one flat vector over every parameter array; g = dE/dtheta, G the
Gauss-Newton matrix of the batch-mean loss E, lambda the damping, mu the structural damping) a step p
minimises the damped quadratic model

    (HF1)  q_lambda(p) = g.p + 1/2 p.(G + lambda I + lambda mu S) p        (S only with structural damping)

approximately, by conjugate gradient on (G + lambda I + lambda mu S) p = -g, which needs only products
``model.gvp`` (never G itself). With b = -g, x_0 the warm start, r_0 = b - B x_0, d_0 = r_0:

    (HF2)  alpha_i = r_i.r_i / d_i.B d_i;  x_{i+1} = x_i + alpha_i d_i;  r_{i+1} = r_i - alpha_i B d_i;
           d_{i+1} = r_{i+1} + (r_{i+1}.r_{i+1} / r_i.r_i) d_i
    (HF3)  phi_i = q_lambda(x_i) = -1/2 x_i.(b + r_i)     (no extra product: B x_i = b - r_i)

CG is truncated: it stops after ``max_cg`` iterations, at non-positive curvature d.B d <= 0, or by Martens'
relative-progress test: with k = max(10, ceil(0.1 i)), stop once i > k, phi_i < 0 and

    (HF4)  (phi_i - phi_{i-k}) / phi_i < k * cg_tol

Warm start (Martens 2010, section 4.5): x_0 = ``cg_decay`` times the previous step's final CG iterate
(0.95 by default); if its model value phi_0 is not negative, CG starts from x_0 = 0 instead.

CG-iterate backtracking (section 4.6): the iterates at i = ceil(gamma^j) (gamma = ``backtrack_gamma``, 1.3)
and the last are kept; the actual loss E(theta + x_i) is evaluated from the last backwards while it keeps
decreasing, and the best one so found is the step p (later iterates fit the quadratic better but may
overshoot where the quadratic is a poor model of E).

Levenberg-Marquardt damping (section 4.1): with the reduction ratio of the actual loss to the undamped
Gauss-Newton model (one more product, G p)

    (HF5)  rho = [E(theta + p) - E(theta)] / [g.p + 1/2 p.G p]
    (HF6)  rho < 1/4: lambda <- 3/2 lambda;   rho > 3/4: lambda <- 2/3 lambda

Line search (Martens & Sutskever 2012, section 8.8): the step is alpha p with alpha the first of 1, 0.8,
0.8^2, ... (at most ``max_line_search`` shrinkings) that meets Armijo's condition

    (HF7)  E(theta + alpha p) <= E(theta) + c alpha g.p,     c = 1e-2

and no step at all (alpha = 0, parameters unchanged) when none does.

Structural damping (Martens & Sutskever 2011, for recurrent nets): ``structural_damping=mu > 0`` adds
lambda mu S to the CG matrix, S = J_s^T D_s J_s the Gauss-Newton matrix of a distance D_s between the hidden
states s at theta and at theta + p (it penalises steps that change the hidden states much, which the
lambda I term alone does not see). Only the model knows its hidden states, so it is applied through the
model: HF calls ``model.gvp(X, Y, v, structural_damping=lambda * mu, **kw)`` and expects
``G v + lambda mu S v`` back. A model whose ``gvp`` has no ``structural_damping`` parameter (the MLP)
is refused with ``ValueError`` when ``mu > 0``. rho (HF5) always uses the undamped G.

The model needs ``params`` (updated in place, as the optimizers of ``manual_bp.optim`` do), ``loss(X, Y,
**kw)``, ``loss_and_grad(X, Y, **kw)`` and ``gvp(X, Y, v, **kw) -> (E, grads, Gv)``; with
``gvp_operator(X, Y, **kw) -> (E, grads, product)`` (the MLP has it) one forward and backward pass serves
every product of a step. ``step``'s keyword arguments go to each of those calls (e.g. a recurrent net's
``h0`` or ``mask``). CG runs in float64 whatever the model's dtype.

State: ``damping`` (lambda, in ``config()`` as the optimizers keep a scheduled lr), ``step_count`` and the
warm-start buffer ``state["cg_init"]`` (the previous final CG iterate, keyed like ``params``);
``state_dict()`` holds only NumPy arrays and plain scalars, in ``manual_bp.optim``'s format (config,
step_count, state).
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from ._validation import check_int
from .optim import _check_real

#: Armijo's sufficient-decrease constant (HF7)
ARMIJO_C = 1e-2
#: the line search's shrink factor (HF7)
LINE_SEARCH_SHRINK = 0.8


def _takes_structural_damping(model) -> bool:
    gvp = getattr(model, "gvp", None)
    if gvp is None:
        return False
    try:
        return "structural_damping" in inspect.signature(gvp).parameters
    except (TypeError, ValueError):
        return False


class HessianFree:
    """Martens' Hessian-free optimiser: truncated CG on the damped Gauss-Newton model (HF1-HF7).

    Parameters
    ----------
    model
        A model with ``params``, ``loss``, ``loss_and_grad`` and ``gvp`` (module docstring).
    damping : float > 0
        The initial Levenberg-Marquardt damping lambda (HF1, HF6).
    max_cg : int >= 1
        CG iterations per step at most.
    cg_tol : float >= 0
        Martens' relative-progress threshold (HF4), 5e-4; 0 runs CG to ``max_cg`` (or exact convergence).
    cg_decay : float in [0, 1]
        The warm start's decay (0 starts every CG at zero).
    backtrack_gamma : float > 1
        Spacing of the CG iterates kept for backtracking, i = ceil(gamma^j).
    max_line_search : int >= 0
        Shrinkings of the step tried by the Armijo line search (HF7) before the step is refused.
    structural_damping : float >= 0
        mu (Martens & Sutskever 2011); > 0 needs a model whose ``gvp`` takes ``structural_damping``.
    """

    #: checkpoints build it from the model, not from a params dict
    takes_model = True

    def __init__(
        self,
        model,
        damping=1.0,
        max_cg=50,
        cg_tol=5e-4,
        cg_decay=0.95,
        backtrack_gamma=1.3,
        max_line_search=10,
        structural_damping=0.0,
    ):
        for name in ("params", "loss", "loss_and_grad", "gvp"):
            if not hasattr(model, name):
                raise TypeError(
                    f"model must have params, loss, loss_and_grad and gvp; "
                    f"{type(model).__name__} has no {name!r}"
                )
        if not isinstance(model.params, dict) or not model.params:
            raise TypeError("model.params must be a non-empty dict of parameter arrays")
        for k, p in model.params.items():
            if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
                what = p.dtype if isinstance(p, np.ndarray) else type(p).__name__
                raise TypeError(f"model.params[{k!r}] must be a float32 or float64 ndarray; got {what}")
        self.damping = _check_real("damping", damping, minimum=0.0, open_min=True)
        self.max_cg = check_int("max_cg", max_cg, minimum=1)
        self.cg_tol = _check_real("cg_tol", cg_tol, minimum=0.0)
        self.cg_decay = _check_real("cg_decay", cg_decay, minimum=0.0, maximum=1.0)
        self.backtrack_gamma = _check_real("backtrack_gamma", backtrack_gamma, minimum=1.0, open_min=True)
        self.max_line_search = check_int("max_line_search", max_line_search, minimum=0)
        self.structural_damping = _check_real("structural_damping", structural_damping, minimum=0.0)
        if self.structural_damping > 0 and not _takes_structural_damping(model):
            raise ValueError(
                f"structural_damping={self.structural_damping} needs a model whose gvp takes "
                f"structural_damping= (Martens & Sutskever 2011: the recurrent nets' hidden states); "
                f"{type(model).__name__}.gvp does not. Use structural_damping=0 for this model."
            )
        self.model = model
        self.params = model.params
        self.step_count = 0
        self.state = {"cg_init": {k: np.zeros_like(p) for k, p in self.params.items()}}

    # -------------------------------------------------------------- flat vectors
    def _flat(self, d) -> np.ndarray:
        return np.concatenate([np.asarray(d[k], dtype=np.float64).ravel() for k in self.params])

    def _unflat(self, x) -> dict:
        out, i = {}, 0
        for k, p in self.params.items():
            out[k] = x[i : i + p.size].reshape(p.shape)
            i += p.size
        return out

    def _save_schedule(self) -> set:
        keep, j = set(), 0
        while True:
            i = math.ceil(self.backtrack_gamma**j)
            if i > self.max_cg:
                return keep
            keep.add(i)
            j += 1

    # -------------------------------------------------------------- the step
    def step(self, X, Y, **kw) -> dict:
        """One Hessian-free step on the batch (X, Y); ``kw`` go to the model's calls. Returns an info dict:

        ``loss_before``, ``loss_after``, ``rho`` (HF5), ``damping`` (lambda used) and ``next_damping`` (HF6),
        ``cg_iterations``, ``cg_stop`` (why CG stopped), ``chosen_iteration`` (backtracking),
        ``alpha`` (line search; 0 when the step was refused), ``gv_products`` and ``loss_evaluations``.
        """
        model, lam, mu = self.model, self.damping, self.structural_damping
        products = 0
        if hasattr(model, "gvp_operator"):  # one forward/backward pass shared by every product of the step
            E0, grads, product = model.gvp_operator(X, Y, **kw)
        else:
            E0, grads = model.loss_and_grad(X, Y, **kw)
            product = None
        missing = [k for k in self.params if k not in grads]
        if missing:
            raise ValueError(f"model.loss_and_grad returned no gradient for {missing}")
        g = self._flat(grads)
        if not np.isfinite(g).all() or not math.isfinite(E0):
            raise ValueError(f"the loss or its gradient is not finite (loss {E0}); no parameter was changed")

        def gv(x, damped):
            nonlocal products
            products += 1
            v = self._unflat(x)
            if damped and mu > 0:  # G v + lambda mu S v
                if product is not None:
                    Gv = product(v, structural_damping=lam * mu)
                else:
                    Gv = model.gvp(X, Y, v, structural_damping=lam * mu, **kw)[2]
            elif product is not None:
                Gv = product(v)
            else:
                Gv = model.gvp(X, Y, v, **kw)[2]
            out = self._flat(Gv)
            if damped:
                out += lam * x  # (HF1) + lambda I
            return out

        x_final, saved, cg_iters, cg_stop = self._cg(g, lambda x: gv(x, damped=True))
        theta0 = {k: p.copy() for k, p in self.params.items()}

        def loss_at(x):
            try:
                for k, dx in self._unflat(x).items():
                    self.params[k][...] = theta0[k] + dx  # cast to the parameter's dtype
                return float(model.loss(X, Y, **kw))
            finally:
                for k, p in theta0.items():
                    self.params[k][...] = p

        # CG-iterate backtracking: from the last kept iterate backwards while the loss decreases
        evaluations = 0
        chosen_i, p = saved[-1]
        E_best = loss_at(p)
        evaluations += 1
        for i, x in reversed(saved[:-1]):
            E_i = loss_at(x)
            evaluations += 1
            if not E_i < E_best:
                break
            chosen_i, p, E_best = i, x, E_i
        if not math.isfinite(E_best):
            E_best = math.inf
        # reduction ratio against the undamped Gauss-Newton model (HF5)
        gp = float(g @ p)
        pGp = float(p @ gv(p, damped=False))
        predicted = gp + 0.5 * pGp
        rho = (E_best - E0) / predicted if predicted < 0 else -math.inf  # (HF5)
        if rho < 0.25:
            next_lam = lam * 1.5  # (HF6)
        elif rho > 0.75:
            next_lam = lam * (2.0 / 3.0)  # (HF6)
        else:
            next_lam = lam
        # Armijo line search on alpha p (HF7)
        alpha, E_new, shrinks = 1.0, E_best, 0
        while not E_new <= E0 + ARMIJO_C * alpha * gp:  # (HF7)
            if shrinks == self.max_line_search:
                alpha, E_new = 0.0, E0  # no acceptable step: the parameters stay
                break
            alpha *= LINE_SEARCH_SHRINK
            E_new = loss_at(alpha * p)
            evaluations += 1
            shrinks += 1
        # commit
        if alpha > 0:
            for k, dx in self._unflat(alpha * p).items():
                self.params[k][...] = theta0[k] + dx
        self.state = {
            "cg_init": {k: v.astype(self.params[k].dtype) for k, v in self._unflat(x_final).items()}
        }
        self.damping = next_lam
        self.step_count += 1
        return {
            "loss_before": float(E0),
            "loss_after": float(E_new),
            "rho": float(rho),
            "damping": lam,
            "next_damping": next_lam,
            "cg_iterations": cg_iters,
            "cg_stop": cg_stop,
            "chosen_iteration": chosen_i,
            "alpha": alpha,
            "gv_products": products,
            "loss_evaluations": evaluations,
        }

    def _cg(self, g, B):
        """Truncated CG on B x = -g from the warm start (HF2-HF4). Returns (x_final, kept iterates,
        iterations, reason)."""
        b = -g
        x = self.cg_decay * self._flat(self.state["cg_init"])
        if x.any():
            r = b - B(x)
            if not -0.5 * float(x @ (b + r)) < 0:  # (HF3) phi(x_0) >= 0: the warm start does not help
                x, r = np.zeros_like(b), b.copy()
        else:
            r = b.copy()
        d = r.copy()
        rr = float(r @ r)
        keep = self._save_schedule()
        saved, phis = [], [-0.5 * float(x @ (b + r))]
        i, reason = 0, "max_cg"
        while i < self.max_cg:
            if rr == 0.0:
                reason = "converged"
                break
            Bd = B(d)
            dBd = float(d @ Bd)
            if not dBd > 0:
                reason = "non-positive curvature"
                break
            alpha = rr / dBd  # (HF2)
            x = x + alpha * d  # (HF2)
            r = r - alpha * Bd  # (HF2)
            rr_new = float(r @ r)
            d = r + (rr_new / rr) * d  # (HF2)
            rr = rr_new
            i += 1
            phis.append(-0.5 * float(x @ (b + r)))  # (HF3)
            if i in keep:
                saved.append((i, x))
            k = max(10, math.ceil(0.1 * i))
            if i > k and phis[i] < 0 and (phis[i] - phis[i - k]) / phis[i] < k * self.cg_tol:  # (HF4)
                reason = "relative progress"
                break
        if not saved or saved[-1][0] != i:
            saved.append((i, x))
        return x, saved, i, reason

    # -------------------------------------------------------------- hyper-parameters and state
    def config(self) -> dict:
        """The constructor's keyword arguments (plain Python scalars; ``damping`` is the current lambda)."""
        return {
            "damping": self.damping,
            "max_cg": self.max_cg,
            "cg_tol": self.cg_tol,
            "cg_decay": self.cg_decay,
            "backtrack_gamma": self.backtrack_gamma,
            "max_line_search": self.max_line_search,
            "structural_damping": self.structural_damping,
        }

    def state_dict(self) -> dict:
        """``{"config": dict of scalars, "step_count": int, "state": {"cg_init": {param: array copy}}}``."""
        return {
            "config": self.config(),
            "step_count": self.step_count,
            "state": {b: {k: v.copy() for k, v in bufs.items()} for b, bufs in self.state.items()},
        }

    def load_state_dict(self, state_dict) -> None:
        """Restore the damping and other hyper-parameters, the step count and the warm start, all validated
        before anything changes. The buffer must have exactly the keys, shapes and dtypes of ``params``."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict; got {type(state_dict).__name__}")
        expected = {"config", "step_count", "state"}
        if set(state_dict) != expected:
            raise ValueError(f"state_dict must have keys {sorted(expected)}; got {sorted(state_dict)}")
        config = state_dict["config"]
        if not isinstance(config, dict):
            raise TypeError(f"state_dict['config'] must be a dict; got {type(config).__name__}")
        if set(config) != set(self.config()):
            raise ValueError(
                f"state_dict['config'] of HessianFree must have keys {sorted(self.config())}; "
                f"got {sorted(config)}"
            )
        fresh = type(self)(self.model, **config)  # validates every hyper-parameter
        step_count = check_int("state_dict['step_count']", state_dict["step_count"], minimum=0)
        state = state_dict["state"]
        if not isinstance(state, dict) or set(state) != {"cg_init"}:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state_dict['state'] of HessianFree must hold buffers ['cg_init']; got {got}")
        bufs = state["cg_init"]
        if not isinstance(bufs, dict) or set(bufs) != set(self.params):
            got = sorted(bufs) if isinstance(bufs, dict) else type(bufs).__name__
            raise ValueError(
                f"state_dict['state']['cg_init'] must have keys {sorted(self.params)}; got {got}"
            )
        new = {}
        for k, p in self.params.items():
            arr = bufs[k]
            where = f"state_dict['state']['cg_init'][{k!r}]"
            if not isinstance(arr, np.ndarray):
                raise TypeError(f"{where} must be an ndarray; got {type(arr).__name__}")
            if arr.shape != p.shape or arr.dtype != p.dtype:
                raise ValueError(
                    f"{where} must have shape {p.shape} and dtype {p.dtype} like params[{k!r}]; "
                    f"got shape {arr.shape}, dtype {arr.dtype}"
                )
            if not np.isfinite(arr).all():
                raise ValueError(f"{where} must be finite")
            new[k] = arr.copy()
        for name, value in vars(fresh).items():  # commit
            if name not in ("model", "params", "state", "step_count"):
                setattr(self, name, value)
        self.state = {"cg_init": new}
        self.step_count = step_count

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"HessianFree({args})"


__all__ = ["HessianFree"]
