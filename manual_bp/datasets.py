"""Data for the training tasks, all local: nothing is downloaded.

- ``load_digits``: the 8x8 handwritten digits (1,797 images) that ship inside scikit-learn (optional extra
  ``manual-bp[train]``), scaled to [0, 1] and split into train/test with a seeded permutation.
- ``load_npz``: a user's own classification data, loaded without pickle.
- ``python_docs_text``: the Python documentation topics that ship with every CPython (``pydoc_data``).
- ``CharVocab``: characters <-> integer ids for a character-level language model.
- ``adding_problem``: Hochreiter & Schmidhuber's (1997) long-range regression task.
"""

from __future__ import annotations

import os

import numpy as np

from ._validation import check_int


class MissingDependency(RuntimeError):
    """An optional dependency is not installed; the message says how to install it."""


def _split(X, y, test_fraction, seed):
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = max(1, int(round(len(X) * test_fraction)))
    test, train = order[:n_test], order[n_test:]
    return X[train], y[train], X[test], y[test]


def load_digits(test_fraction=0.2, seed=0, dtype=np.float64):
    """scikit-learn's 8x8 digits: ``(X_train, y_train, X_test, y_test)``, X in [0, 1] of shape (N, 64).

    Raises :class:`MissingDependency` when scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:
        raise MissingDependency(
            "the digits data ships inside scikit-learn, which is not installed: "
            "pip install 'manual-bp[train]' (or pip install scikit-learn), or pass --data FILE.npz"
        ) from None
    d = _load()
    X = (d.data / 16.0).astype(dtype)
    y = d.target.astype(np.intp)
    return _split(X, y, test_fraction, seed)


def load_npz(path, test_fraction=0.2, seed=0, dtype=np.float64):
    """A user's classification data from an ``.npz`` (never unpickled).

    Either ``X_train, y_train, X_test, y_test`` or ``X, y`` (split here with a seeded permutation);
    X : (N, D) floats, y : (N,) integer labels.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"cannot read {path} as a NumPy .npz without pickle: {exc}") from None
    if {"X_train", "y_train", "X_test", "y_test"} <= set(arrays):
        parts = [arrays[k] for k in ("X_train", "y_train", "X_test", "y_test")]
    elif {"X", "y"} <= set(arrays):
        parts = _split(arrays["X"], arrays["y"], test_fraction, seed)
    else:
        raise ValueError(
            f"{path} must hold arrays X_train, y_train, X_test, y_test (or X, y); got {sorted(arrays)}"
        )
    X_train, y_train, X_test, y_test = parts
    for name, X, y in (("train", X_train, y_train), ("test", X_test, y_test)):
        if X.ndim != 2 or y.ndim != 1 or len(X) != len(y) or len(X) == 0:
            raise ValueError(
                f"{path}: {name} X must be (N, D) and y (N,) with N >= 1; got {X.shape} and {y.shape}"
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{path}: y_{name} must hold integer labels; got dtype {y.dtype}")
        if not np.issubdtype(X.dtype, np.number) or not np.isfinite(X).all():
            raise ValueError(f"{path}: X_{name} must be finite numbers")
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"{path}: train and test have {X_train.shape[1]} and {X_test.shape[1]} features")
    return X_train.astype(dtype), y_train.astype(np.intp), X_test.astype(dtype), y_test.astype(np.intp)


def python_docs_text() -> str:
    """The Python documentation topics that ship with CPython (``pydoc_data.topics``), ~465k characters."""
    from pydoc_data.topics import topics

    return "".join(topics[k] for k in sorted(topics))


class CharVocab:
    """Characters <-> ids, ids in order of first sorted appearance."""

    def __init__(self, text: str):
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty string")
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        try:
            return np.fromiter((self.index[c] for c in text), dtype=np.intp, count=len(text))
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def adding_problem(T, N, rng, dtype=np.float64):
    """The adding problem: ``X (T, N, 2)``, ``Y (T, N, 1)``, ``mask (T, N)``.

    Channel 0 holds uniform [0, 1) numbers, channel 1 marks two positions (one in each half of the sequence).
    The target is the sum of the two marked numbers, read at the last step alone (mask). Predicting the
    constant 1 gives a mean squared error of 1/6 ~ 0.167 (the sum's variance: 2 * 1/12).
    """
    T = check_int("T", T, minimum=2)
    N = check_int("N", N, minimum=1)
    X = np.zeros((T, N, 2), dtype=dtype)
    X[:, :, 0] = rng.uniform(0, 1, (T, N))
    half = T // 2
    first = rng.integers(0, half, N)
    second = rng.integers(half, T, N)
    cols = np.arange(N)
    X[first, cols, 1] = 1
    X[second, cols, 1] = 1
    Y = np.zeros((T, N, 1), dtype=dtype)
    Y[-1, :, 0] = X[first, cols, 0] + X[second, cols, 0]
    mask = np.zeros((T, N), dtype=bool)
    mask[-1] = True
    return X, Y, mask
