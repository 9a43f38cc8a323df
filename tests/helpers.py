"""Tolerances (by dtype, in one place) and assertions with messages that say what, where and by how much.

Errors are norm-wise relative per parameter array (``manual_bp.gradcheck.rel_error``):
``max|ours - ref| / max(max|ours|, max|ref|, floor)``.
"""

from __future__ import annotations

import numpy as np

from manual_bp.gradcheck import compare_grads, numerical_grad

# Against torch autograd in float64: both sides compute the same exact gradient with different summation
# orders, so they agree to a few ulps times the depth of the computation.
TOL_TORCH = {np.float64: 1e-10, np.float32: 1e-4}
# float32 models are compared with torch computing in float64 (the exact answer), so the allowance is
# float32's epsilon (1.2e-7) times the growth of rounding error through layers and time steps.
# Against central differences (float64 only, eps = 1e-6): truncation ~1e-12, rounding ~1e-10 |E|.
TOL_FD = 1e-6
FD_EPS = 1e-6
FLOOR_TORCH = 1e-12  # only keeps 0/0 out: torch and ours agree to rounding even for tiny gradients
FLOOR_FD = 1e-3  # central differences are good to ~1e-10 absolute; see manual_bp.gradcheck


def tol_torch(dtype) -> float:
    return TOL_TORCH[np.dtype(dtype).type]


def assert_grads_close(ours: dict, ref: dict, tol: float, floor: float, what: str = "", keys=None):
    """Fail with every offending parameter's name, shape, worst index, both values, error and allowance."""
    for k in keys if keys is not None else ref:
        if np.shape(ours[k]) != np.shape(ref[k]):
            raise AssertionError(f"{what}{k}: shape {np.shape(ours[k])} != reference {np.shape(ref[k])}")
    result = compare_grads(ours, ref, tol=tol, floor=floor, keys=keys)
    if not result.ok:
        lines = "\n".join(f"  {r}" for r in result.failures())
        raise AssertionError(f"{what}gradients differ from the reference:\n{lines}")
    return result


def assert_scalar_close(ours: float, ref: float, tol: float, what: str):
    err = abs(ours - ref) / max(abs(ours), abs(ref), 1.0)
    if not err <= tol:
        raise AssertionError(
            f"{what}: got {ours!r}, reference {ref!r}, error {err:.3e} > allowance {tol:.1e}"
        )


def loss_at(net, X, Y):
    """An MLP's loss as a function of a params dict (for finite differences); its own params are restored."""

    def f(p):
        old, net.params = net.params, p
        try:
            return net.loss(X, Y)
        finally:
            net.params = old

    return f


def fd_grads(loss_at, params: dict, keys=None) -> dict:
    """Central differences of ``loss_at(params)`` in float64."""
    return numerical_grad(loss_at, params, eps=FD_EPS, keys=keys)
