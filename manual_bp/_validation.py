"""Input checks shared by every public entry point.

Every check raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right kind, wrong value) and names
the expected and the actual value. Nothing here uses ``assert``, which ``python -O`` removes.
"""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype) -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64; got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64; got {dt}")
    return dt


def check_choice(name: str, value, choices) -> str:
    """Raise unless ``value`` is one of ``choices`` (strings)."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}; got {value!r}")
    return value


def check_int(name: str, value, minimum: int | None = None) -> int:
    """Return ``value`` as int if it is an integer (not bool) no smaller than ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return value


def check_seed(seed):
    """A seed is None or a non-negative integer."""
    if seed is None:
        return None
    return check_int("seed", seed, minimum=0)


def as_float_array(name: str, value, dtype: np.dtype, shape: tuple) -> np.ndarray:
    """Convert to a finite float array of ``dtype`` whose shape matches ``shape``.

    ``shape`` holds ints (required sizes) and None (any size >= 1). The error message shows the expected
    shape with its named dimensions, e.g. ``X must have shape (N, n0=4); got (3, 5)``.
    """
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{name} must be a numeric array; got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real; got dtype {arr.dtype}")
    check_shape(name, arr, shape)
    arr = arr.astype(dtype, copy=False)
    check_finite(name, arr)
    return arr


def describe_shape(shape) -> str:
    """``(("N", None), ("n0", 4))`` -> ``(N, n0=4)``."""
    parts = []
    for label, size in shape:
        parts.append(label if size is None else f"{label}={size}")
    return "(" + ", ".join(parts) + (",)" if len(parts) == 1 else ")")


def check_shape(name: str, arr: np.ndarray, shape) -> None:
    """``shape`` is a sequence of ``(label, size)``; size None means any size >= 1."""
    if arr.ndim != len(shape) or any(
        (size is not None and n != size) for n, (_, size) in zip(arr.shape, shape)
    ):
        raise ValueError(f"{name} must have shape {describe_shape(shape)}; got {arr.shape}")
    for n, (label, _) in zip(arr.shape, shape):
        if n == 0:
            raise ValueError(f"{name} must have {label} >= 1; got shape {arr.shape}")


def check_finite(name: str, arr: np.ndarray) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{name} must be finite; got {arr[tuple(bad)]} at index {tuple(int(i) for i in bad)}"
        )


def as_labels(name: str, value, n_classes: int, shape) -> np.ndarray:
    """Integer class labels in ``[0, n_classes)``; floats holding whole numbers are refused (say what)."""
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels; got dtype {arr.dtype}")
    check_shape(name, arr, shape)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name} labels must lie in [0, {n_classes}); got {bad}")
    return arr.astype(np.intp, copy=False)


def check_param_dict(name: str, given, expected: dict, dtype: np.dtype, optional=()) -> dict:
    """A dict with exactly ``expected``'s keys (plus any of ``optional``) and matching shapes.

    Returns a new dict of arrays cast to ``dtype``; raises naming the missing, extra or misshapen key.
    """
    if not isinstance(given, dict):
        raise TypeError(f"{name} must be a dict of arrays keyed like params; got {type(given).__name__}")
    missing = [k for k in expected if k not in given]
    extra = [k for k in given if k not in expected and k not in optional]
    if missing or extra:
        raise ValueError(
            f"{name} must have keys {sorted(expected)}; missing {sorted(missing)}, unexpected {sorted(extra)}"
        )
    out = {}
    for key, ref in expected.items():
        shape = tuple((f"{key}[{i}]", n) for i, n in enumerate(np.shape(ref)))
        arr = np.asarray(given[key])
        if arr.shape != np.shape(ref):
            raise ValueError(f"{name}[{key!r}] must have shape {np.shape(ref)}; got {arr.shape}")
        out[key] = as_float_array(f"{name}[{key!r}]", arr, dtype, shape) if arr.size else arr.astype(dtype)
    return out
