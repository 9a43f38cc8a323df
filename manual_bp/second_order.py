"""Check a Hessian-vector product against central differences of its own gradient.

For a gradient g(theta) and a direction v, the Hessian-vector product is the directional derivative of the
gradient, H v = d/dr g(theta + r v)|_{r=0}, so a central difference along v estimates it:

    (HC1)  H v ~ [g(theta + h v) - g(theta - h v)] / (2 h),     h = eps / max_i |v_i|

The step is scaled by v's largest entry so that no parameter moves by more than ``eps``, whatever v's scale
(h = eps for v = 0, where both sides must be 0). The comparison is ``gradcheck``'s, per parameter array:
err = max_i |Hv_i - FD_i| / max(max|Hv|, max|FD|, floor), reported with the worst index and both values.

Why eps = 1e-6 by default: truncation is O(h^2 |d^3 g|) ~ 1e-12 and rounding ~1e-16 |g| / h ~ 1e-10 |g| in
float64 (the same budget as gradcheck's, one derivative up), well inside ``tol * floor = 1e-9`` for
gradients of order 1. A parameter at a kink (relu at 0) within ``eps`` of the step breaks the estimate.

    from manual_bp.second_order import hvpcheck
    result = hvpcheck(grad_fn, params, v, hvp_fn)   # grad_fn(params) -> dict, hvp_fn(params, v) -> dict
    assert result.ok, str(result)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .gradcheck import GradcheckResult, compare_grads


@dataclass
class HvpcheckResult(GradcheckResult):
    """``GradcheckResult`` of H v against central differences of the gradient (HC1) with step ``step``."""

    step: float = 0.0

    def __str__(self):
        head = f"hvpcheck: H v against central differences of the gradient along v (step h = {self.step:.3e})"
        return head + "\n" + super().__str__()


def _check_inputs(params, v):
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays; got {type(params).__name__}")
    if not isinstance(v, dict):
        raise TypeError(f"v must be a dict of arrays keyed like params; got {type(v).__name__}")
    missing = [k for k in params if k not in v]
    extra = [k for k in v if k not in params]
    if missing or extra:
        raise ValueError(
            f"v must have the keys of params {sorted(params)}; missing {sorted(missing)}, unexpected "
            f"{sorted(extra)}"
        )
    for k, p in params.items():
        p = np.asarray(p)
        if p.dtype.kind != "f":
            raise TypeError(f"params[{k!r}] must be a float array; got dtype {p.dtype}")
        d = np.asarray(v[k])
        if d.dtype.kind not in "fiu" or d.dtype == np.bool_:
            raise TypeError(f"v[{k!r}] must be a real numeric array; got dtype {d.dtype}")
        if d.shape != p.shape:
            raise ValueError(f"v[{k!r}] must have the shape of params[{k!r}], {p.shape}; got {d.shape}")
        if not np.isfinite(d).all():
            raise ValueError(f"v[{k!r}] must be finite")


def _call_grad(grad_fn, point, keys, what):
    g = grad_fn(point)
    if not isinstance(g, dict):
        raise TypeError(f"{what} must return a dict of arrays keyed like params; got {type(g).__name__}")
    missing = [k for k in keys if k not in g]
    if missing:
        raise ValueError(f"{what} returned a dict without keys {missing}; it has {sorted(g)}")
    return {k: np.asarray(g[k], dtype=np.float64) for k in keys}


def hvpcheck(
    grad_fn,
    params: dict,
    v: dict,
    hvp_fn,
    eps: float = 1e-6,
    tol: float = 1e-6,
    floor: float = 1e-3,
    keys=None,
) -> HvpcheckResult:
    """Check ``hvp_fn``'s Hessian-vector product against central differences of ``grad_fn`` along ``v``.

    Parameters
    ----------
    grad_fn : callable
        ``grad_fn(params) -> dict`` of gradient arrays keyed like ``params`` (extra keys are ignored).
    params : dict of str -> float ndarray
        The point; never modified (both functions receive copies).
    v : dict of str -> ndarray
        The direction, with exactly the keys and shapes of ``params``.
    hvp_fn : callable
        ``hvp_fn(params, v) -> dict``, the product H v under test, keyed like ``params``.
    eps, tol, floor : float
        The largest parameter move (HC1), the allowance on the error, and its denominator's floor
        (as ``manual_bp.gradcheck``).
    keys : list of str, optional
        Parameters to compare (default: all).

    Returns an :class:`HvpcheckResult` (a ``GradcheckResult``): ``.ok`` when every parameter passes, and
    ``str(result)`` names each parameter's error, allowance, worst index and both values there.
    Cost: two gradients and one product. Warns when a parameter is not float64.
    """
    if not callable(grad_fn) or not callable(hvp_fn):
        bad = "grad_fn" if not callable(grad_fn) else "hvp_fn"
        raise TypeError(f"{bad} must be callable")
    _check_inputs(params, v)
    if isinstance(eps, bool) or not isinstance(eps, (float, int)) or not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive number; got {eps!r}")
    keys = list(params) if keys is None else list(keys)
    unknown = [k for k in keys if k not in params]
    if unknown:
        raise ValueError(f"keys {unknown} are not parameters; params has {sorted(params)}")
    low = [k for k, p in params.items() if np.asarray(p).dtype != np.float64]
    if low:
        warnings.warn(
            f"hvpcheck: parameters {low} are not float64; finite differences in lower precision are "
            "unreliable (cast the model to float64 to check it)",
            RuntimeWarning,
            stacklevel=2,
        )
    base = {k: np.array(p, copy=True) for k, p in params.items()}
    vmax = max(
        (float(np.abs(np.asarray(d, dtype=np.float64)).max(initial=0.0)) for d in v.values()), default=0.0
    )
    h = float(eps) / vmax if vmax > 0 else float(eps)  # (HC1) no entry moves by more than eps
    plus = {k: (p + h * np.asarray(v[k], dtype=np.float64)).astype(p.dtype) for k, p in base.items()}
    minus = {k: (p - h * np.asarray(v[k], dtype=np.float64)).astype(p.dtype) for k, p in base.items()}
    g_plus = _call_grad(grad_fn, plus, keys, "grad_fn")
    g_minus = _call_grad(grad_fn, minus, keys, "grad_fn")
    numeric = {k: (g_plus[k] - g_minus[k]) / (2 * h) for k in keys}  # (HC1)
    Hv = hvp_fn({k: p.copy() for k, p in base.items()}, {k: np.array(d, copy=True) for k, d in v.items()})
    if not isinstance(Hv, dict):
        raise TypeError(f"hvp_fn must return a dict of arrays keyed like params; got {type(Hv).__name__}")
    result = compare_grads(Hv, numeric, tol=tol, floor=floor, keys=keys)
    return HvpcheckResult(result.reports, step=h)


__all__ = ["hvpcheck", "HvpcheckResult"]
