"""Central finite differences and a gradient checker users can point at their own code.

    dE/dtheta_i ~ [E(theta + eps e_i) - E(theta - eps e_i)] / (2 eps)         (FD)

Error measure, per parameter array (norm-wise relative error with a floor):

    err = max_i |g_i - r_i| / max(max_i |g_i|, max_i |r_i|, floor)

where g is the gradient under test and r the reference. Dividing by the array's largest magnitude, not each
entry's, keeps an entry that is zero by cancellation from turning rounding noise into a huge "relative"
error; the floor keeps 0/0 from becoming NaN and judges an array of gradients that are all tinier than
``floor`` on absolute error ``tol * floor``. The report keeps the worst index and both values there.

Why eps = 1e-6 and floor = 1e-3 by default: in float64 a central difference has truncation error
O(eps^2 |E'''|) ~ 1e-12 and rounding error ~ 1e-16 |E| / eps ~ 1e-10 |E|, so a loss of order 1 gives
gradients good to about 1e-10 absolute, well inside ``tol * floor = 1e-9``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass
class ParamReport:
    """Comparison of one parameter array."""

    name: str
    shape: tuple
    error: float  # norm-wise relative error (see module docstring)
    index: tuple  # worst index
    value: float  # gradient under test at ``index``
    reference: float  # reference gradient at ``index``
    tol: float

    @property
    def ok(self) -> bool:
        return bool(self.error <= self.tol)

    def __str__(self):
        return (
            f"{self.name} {self.shape}: error {self.error:.3e} (allowance {self.tol:.1e}) "
            f"at index {self.index}: "
            f"got {self.value!r}, reference {self.reference!r}"
        )


@dataclass
class GradcheckResult:
    """Per-parameter reports; ``ok`` when every one is within its allowance."""

    reports: dict

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports.values())

    @property
    def max_error(self) -> float:
        return max((r.error for r in self.reports.values()), default=0.0)

    @property
    def worst(self) -> ParamReport | None:
        return max(self.reports.values(), key=lambda r: r.error, default=None)

    def failures(self) -> list:
        return [r for r in self.reports.values() if not r.ok]

    def __bool__(self):
        return self.ok

    def __str__(self):
        lines = [("PASS " if r.ok else "FAIL ") + str(r) for r in self.reports.values()]
        return "\n".join(lines)


def rel_error(name, value, reference, tol, floor) -> ParamReport:
    """Norm-wise relative error of ``value`` against ``reference`` (see the module docstring)."""
    g = np.asarray(value, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if g.shape != r.shape:
        raise ValueError(f"{name}: gradient has shape {g.shape} but the reference has shape {r.shape}")
    if g.size == 0:
        return ParamReport(name, g.shape, 0.0, (), 0.0, 0.0, tol)
    diff = np.abs(g - r)
    if not np.isfinite(diff).all():  # a NaN/inf gradient is the worst possible answer
        diff = np.where(np.isfinite(diff), diff, np.inf)
    i = np.unravel_index(int(np.argmax(diff)), g.shape)
    denom = max(float(np.abs(g).max(initial=0.0)), float(np.abs(r).max(initial=0.0)), floor)
    err = float(diff[i] / denom) if np.isfinite(denom) else float("inf")
    if np.isnan(err):
        err = float("inf")
    return ParamReport(name, g.shape, err, tuple(int(k) for k in i), float(g[i]), float(r[i]), tol)


def compare_grads(
    grads: dict, reference: dict, tol: float, floor: float = 1e-3, keys=None
) -> GradcheckResult:
    """Compare two gradient dicts key by key (``keys`` defaults to the reference's keys)."""
    keys = list(reference) if keys is None else list(keys)
    missing = [k for k in keys if k not in grads]
    if missing:
        raise ValueError(f"gradient dict lacks keys {missing}; it has {sorted(grads)}")
    return GradcheckResult({k: rel_error(k, grads[k], reference[k], tol, floor) for k in keys})


def numerical_grad(f, params: dict, eps: float = 1e-6, keys=None) -> dict:
    """Central-difference gradient of the scalar ``f(params)`` for each array in ``params``.

    ``f`` receives a dict of copies; one entry is moved by +-eps at a time and restored exactly, so the
    caller's arrays are never changed. Cost: 2 calls of f per scalar parameter.
    """
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays; got {type(params).__name__}")
    if not (isinstance(eps, (float, int)) and eps > 0):
        raise ValueError(f"eps must be a positive number; got {eps!r}")
    work = {k: np.array(v, copy=True) for k, v in params.items()}
    for k, v in work.items():
        if v.dtype.kind != "f":
            raise TypeError(f"params[{k!r}] must be a float array; got dtype {v.dtype}")
    keys = list(work) if keys is None else list(keys)
    out = {}
    for k in keys:
        p = work[k]
        g = np.zeros(p.shape, dtype=np.float64)
        flat, gflat = p.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            f_plus = float(f(work))
            flat[i] = old - eps
            f_minus = float(f(work))
            flat[i] = old
            gflat[i] = (f_plus - f_minus) / (2 * eps)  # (FD)
        out[k] = g
    return out


def gradcheck(
    f, params: dict, grads: dict, eps: float = 1e-6, tol: float = 1e-6, floor: float = 1e-3, keys=None
) -> GradcheckResult:
    """Check ``grads`` (e.g. from your own backward pass) against central differences of ``f``.

    Parameters
    ----------
    f : callable
        ``f(params) -> float``, the scalar whose gradient ``grads`` claims to be.
    params : dict of str -> float ndarray
        The point at which to check. Never modified.
    grads : dict of str -> ndarray
        The gradient under test, keyed like ``params`` (extra keys are ignored).
    eps, tol, floor : float
        Step, allowance on the error, and the denominator's floor (module docstring).

    Returns a :class:`GradcheckResult`; ``bool(result)`` is True when every parameter passes, and
    ``str(result)`` names each parameter's error, worst index and both values there.

    Warns when a parameter is not float64: float32 finite differences are only good to ~1e-3.
    """
    low = [k for k, v in params.items() if np.asarray(v).dtype != np.float64]
    if low:
        warnings.warn(
            f"gradcheck: parameters {low} are not float64; finite differences in lower precision are "
            "unreliable (cast the model to float64 to check it)",
            RuntimeWarning,
            stacklevel=2,
        )
    numeric = numerical_grad(f, params, eps=eps, keys=keys)
    return compare_grads(grads, numeric, tol=tol, floor=floor, keys=list(numeric))
