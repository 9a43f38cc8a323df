"""Data for the training tasks, all local: nothing is downloaded.

- ``load_digits``: the 8x8 handwritten digits (1,797 images) that ship inside scikit-learn (optional extra
  ``manual-bp[train]``), scaled to [0, 1] and split into train/test with a seeded permutation.
- ``load_npz``: a user's own classification data, loaded without pickle and validated (``npz_members``
  checks the archive itself, ``check_input_file`` the path).
- ``python_docs_text``: the Python documentation topics that ship with every CPython (``pydoc_data``);
  ``read_text``: a user's UTF-8 text.
- ``CharVocab``: characters <-> integer ids for a character-level language model.
- ``adding_problem``: Hochreiter & Schmidhuber's (1997) long-range regression task.
"""

from __future__ import annotations

import codecs
import os
import zipfile
import zlib

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


#: the two layouts ``load_npz`` accepts, by array name
NPZ_LAYOUTS = (("X_train", "y_train", "X_test", "y_test"), ("X", "y"))
_NPZ_HELP = (
    "save it with np.savez(path, X_train=..., y_train=..., X_test=..., y_test=...) "
    "or np.savez(path, X=..., y=...)"
)


def check_input_file(path) -> str:
    """``path`` as a str if it names a readable regular file; else an OSError naming it and what is wrong."""
    path = os.fspath(path)
    if not path:
        raise FileNotFoundError("an empty file name")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory, not a file")
    if not os.path.isfile(path):
        raise OSError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{path}: permission denied (the file is not readable)")
    return path


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3 and b"\0" not in head  # a character cut off by the read
    return b"\0" not in head


def npz_members(path) -> dict:
    """``{array name: uncompressed bytes}`` of an ``.npz``, checked to be a readable zip archive of arrays.

    Raises ValueError saying what the file is instead (a text file, a single ``.npy`` array, a damaged or
    truncated archive), never NumPy's pickle advice or a zipfile traceback.
    """
    path = check_input_file(path)
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"\x93NUMPY"):
        raise ValueError(f"{path}: a single .npy array, not an .npz archive of named arrays; {_NPZ_HELP}")
    if not head.startswith(b"PK"):
        what = "not a zip archive"
        if not head:
            what = "an empty file"
        elif _looks_like_text(head):
            what = "a text file"
        raise ValueError(f"{path}: not a NumPy .npz archive ({what}); {_NPZ_HELP}")
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{path}: a damaged or truncated .npz archive ({exc})") from None
    members = {}
    for info in infos:
        name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        members[name] = info.file_size
    return members


def _read_arrays(path, names) -> dict:
    """The named arrays of an ``.npz``, without pickle; ValueError naming the array that cannot be read."""
    out = {}
    try:
        f = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{path}: a damaged or truncated .npz archive ({exc})") from None
    with f:
        for name in names:
            try:
                out[name] = f[name]
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    raise ValueError(
                        f"{path}: array {name!r} holds Python objects (loading it would need pickle); "
                        "save plain numeric arrays"
                    ) from None
                raise ValueError(f"{path}: array {name!r} cannot be read: {exc}") from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
                raise ValueError(f"{path}: array {name!r} is damaged or truncated ({exc})") from None
    return out


def _first(mask) -> tuple:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _index(idx) -> str:
    return ", ".join(str(i) for i in idx)


def _check_features(path, name, X) -> None:
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: {name} must hold real numbers; got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{path}: {name} must be 2-D, (N samples, D features); got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{path}: {name} has no samples (shape {X.shape})")
    if X.shape[1] == 0:
        raise ValueError(f"{path}: {name} has no features (shape {X.shape})")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        idx = _first(~np.isfinite(X))
        raise ValueError(f"{path}: {name} must be finite; {name}[{_index(idx)}] is {X[idx]}")


def _check_labels(path, name, y, x_name, n) -> None:
    if y.dtype.kind == "f" and y.size and np.isfinite(y).all() and (y == np.round(y)).all():
        hint = " (whole numbers stored as floats: save y.astype(int))"
    else:
        hint = ""
    if y.dtype.kind not in "iu":
        raise ValueError(
            f"{path}: {name} must hold integer class labels 0, 1, 2, ...; got dtype {y.dtype}{hint}"
        )
    if y.ndim != 1:
        hint = ""
        if y.ndim == 2 and y.shape[1] == 1:
            hint = " (save y.reshape(-1))"
        elif y.ndim == 2:
            hint = " (one-hot rows? save the class indices y.argmax(axis=1))"
        raise ValueError(f"{path}: {name} must be 1-D, one label per sample; got shape {y.shape}{hint}")
    if len(y) != n:
        raise ValueError(f"{path}: {x_name} has {n} samples (rows) but {name} has {len(y)} labels")
    if y.dtype.kind == "i" and (y < 0).any():
        i = _first(y < 0)[0]
        raise ValueError(f"{path}: {name}[{i}] = {y[i]}: labels must be class indices 0, 1, 2, ...")
    if int(y.max()) > np.iinfo(np.int32).max:
        i = int(y.argmax())
        raise ValueError(
            f"{path}: {name}[{i}] = {y[i]}: labels must be class indices 0, 1, 2, ... below 2**31"
        )


def load_npz(path, test_fraction=0.2, seed=0, dtype=np.float64):
    """A user's classification data from an ``.npz`` (never unpickled), validated before it is returned.

    Either ``X_train, y_train, X_test, y_test`` or ``X, y`` (split here with a seeded permutation);
    X : (N, D) finite real numbers, y : (N,) integer class labels 0, 1, 2, ... Other arrays in the file are
    ignored. Raises OSError (missing, unreadable, a directory) or ValueError (what is wrong and where: the
    array, the index, expected and got) before returning anything.
    """
    members = npz_members(path)
    path = os.fspath(path)
    split_keys, whole_keys = NPZ_LAYOUTS
    has_split = [k for k in split_keys if k in members]
    has_whole = [k for k in whole_keys if k in members]
    if "meta" in members and any(k.startswith("params/") for k in members):
        raise ValueError(f"{path}: a manual-bp checkpoint, not a data set; {_NPZ_HELP}")
    if len(has_split) == len(split_keys) and has_whole:
        raise ValueError(
            f"{path}: holds both X_train, y_train, X_test, y_test and {', '.join(has_whole)}; keep one layout"
        )
    if len(has_split) == len(split_keys):
        keys = split_keys
    elif len(has_whole) == len(whole_keys) and not has_split:
        keys = whole_keys
    else:
        got = ", ".join(sorted(members)) or "no arrays"
        if has_split:
            missing = [k for k in split_keys if k not in members]
            raise ValueError(f"{path}: has {', '.join(has_split)} but not {', '.join(missing)}; got {got}")
        raise ValueError(f"{path}: must hold arrays X_train, y_train, X_test, y_test (or X, y); got {got}")
    arrays = _read_arrays(path, keys)
    if keys == whole_keys:
        X, y = arrays["X"], arrays["y"]
        _check_features(path, "X", X)
        _check_labels(path, "y", y, "X", len(X))
        if len(X) < 2:
            raise ValueError(
                f"{path}: X and y hold 1 sample; at least 2 are needed to split them into training and test "
                "sets (or save X_train, y_train, X_test, y_test)"
            )
        parts = _split(X, y, test_fraction, seed)
    else:
        for s in ("train", "test"):
            _check_features(path, f"X_{s}", arrays[f"X_{s}"])
            _check_labels(path, f"y_{s}", arrays[f"y_{s}"], f"X_{s}", len(arrays[f"X_{s}"]))
        parts = [arrays[k] for k in keys]
    X_train, y_train, X_test, y_test = parts
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"{path}: X_train has {X_train.shape[1]} features but X_test has {X_test.shape[1]}")
    return X_train.astype(dtype), y_train.astype(np.intp), X_test.astype(dtype), y_test.astype(np.intp)


def python_docs_text() -> str:
    """The Python documentation topics that ship with CPython (``pydoc_data.topics``), ~465k characters.

    Raises :class:`MissingDependency` where this Python was installed without them.
    """
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise MissingDependency(
            "this Python has no pydoc_data (the documentation topics the default text comes from); "
            "pass --text FILE"
        ) from None
    return "".join(topics[k] for k in sorted(topics))


def read_text(path, max_chars=None) -> str:
    """The first ``max_chars`` characters (all if None) of a UTF-8 text file.

    Reads at most ``4 * max_chars`` bytes (a character is at most 4 bytes). A file that is not UTF-8 raises
    ValueError naming the file and the byte offset of the first bad byte.
    """
    path = check_input_file(path)
    whole = max_chars is None or 4 * max_chars >= os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read() if whole else f.read(4 * max_chars)
        final = whole or not f.read(1)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        text = decoder.decode(raw, final=final)
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1]
        raise ValueError(
            f"{path}: not UTF-8 text: byte 0x{bad.hex()} at offset {exc.start} ({exc.reason})"
        ) from None
    return text if max_chars is None else text[:max_chars]


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
