"""The test suite's names for the one tolerance table and the shared assertions of ``manual_bp.harness``.

Nothing is defined here: every value comes from ``manual_bp.harness.TOLERANCES`` (where each is explained),
so that the suite, ``manual-bp check`` and the benchmarks judge by the same numbers.
"""

from __future__ import annotations

from manual_bp.harness import (
    TOLERANCES,
    allowance,
    assert_grads_close,
    assert_scalar_close,
    fd_grads,
    loss_at,
)

_F64 = TOLERANCES["float64"]
TOL_FD, FD_EPS, FLOOR_FD, FLOOR_TORCH = _F64.fd, _F64.fd_eps, _F64.fd_floor, _F64.torch_floor


def tol_torch(dtype) -> float:
    """The torch allowance for a model of ``dtype``."""
    return allowance(dtype).torch


__all__ = ["TOL_FD", "FD_EPS", "FLOOR_FD", "FLOOR_TORCH", "tol_torch", "assert_grads_close",
           "assert_scalar_close", "fd_grads", "loss_at"]
