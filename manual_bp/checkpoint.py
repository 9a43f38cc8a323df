"""Checkpoints: a model, its optimizer, its schedule and your own counters in one ``.npz``, never pickled.

    save(path, model, optimizer=None, scheduler=None, extra=None)
    ck = load(path)        # Checkpoint(model, optimizer, scheduler, extra), a named tuple
    fit(..., callbacks=[EveryEpoch(path)])     # save after every epoch of fit / fit_stream

What the file holds (``np.savez``, uncompressed; every member a plain numeric array, so it loads with
``np.load(path, allow_pickle=False)``):

    "meta"                    a 0-d unicode array: one JSON document (below)
    "params/<name>"           the model's parameters, e.g. "params/W1"
    "optimizer/<buf>/<name>"  the optimizer's buffers, e.g. "optimizer/exp_avg/W1"
    "extra/<key>"             the ndarray values of ``extra`` (its other values live in the JSON)

The JSON names the format and its version, the model's class (looked up in the model registry,
``manual_bp.models.MODELS``, at load time: MLP, RNN, LSTM, GRU) and its ``config()``, every array's shape,
dtype and SHA-256, the optimizer's class, ``config()`` and step count, the schedule's ``state_dict()``, and
``extra``.

A load validates everything before it returns: the format, every array's name, shape, dtype and checksum,
the model's configuration (the class rebuilt from it must have the same parameter names, shapes and dtypes),
and the optimizer's and schedule's state. A truncated, corrupted or mismatched file raises ``ValueError``
saying what is wrong, never a zipfile or pickle traceback. A missing file raises ``FileNotFoundError``.

Writes are atomic: the file is written to a temporary file in the same directory, flushed and fsynced, then
renamed over ``path`` with ``os.replace``; a crash at any point leaves the previous checkpoint intact. The
directory is checked (it exists and is writable, and ``path`` is not a directory) before any work, and every
error names the path you gave. The file gets the permissions any program's new file gets: 0666 less the
process's umask.

Exact resume: ``EveryEpoch(path)``, a callback of ``fit`` and ``fit_stream``, stores what continues the run
in ``extra["fit"]`` (``extra["fit_stream"]``): the epoch count, the seed and the history; the shuffle of epoch
e is drawn from ``default_rng([seed, e])``, so the seed and the epoch are the whole random state.
``fit(ck.model, ck.optimizer, X, Y, epochs=..., scheduler=ck.scheduler, **ck.extra["fit"])`` continues bit
for bit as if it had never stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any, NamedTuple

import numpy as np

from .models import MODELS, OPTIMIZERS, SCHEDULERS, model_name

FORMAT = "manual-bp-checkpoint"
VERSION = 1


class Checkpoint(NamedTuple):
    """What ``load`` returns. ``optimizer`` and ``scheduler`` are None when they were not saved."""

    model: Any
    optimizer: Any
    scheduler: Any
    extra: dict


# ---------------------------------------------------------------------------------------------- save
def _model_class_name(model) -> str:
    name = model_name(model)  # TypeError for a class load could not rebuild
    if not callable(getattr(model, "config", None)) or not isinstance(getattr(model, "params", None), dict):
        raise TypeError(f"model must have config() and a params dict; {name} has not")
    return name


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _describe(arr: np.ndarray) -> dict:
    return {"shape": list(arr.shape), "dtype": arr.dtype.str, "sha256": _digest(arr)}


def _json(name, value) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must hold only JSON values (dict, list, str, int, float, bool, None): {exc}"
        ) from exc


def _write_npz(f, arrays: dict) -> None:
    """The one place bytes are written (a test replaces it to simulate a crash mid-save)."""
    np.savez(f, **arrays)


def save(path, model, optimizer=None, scheduler=None, extra=None) -> None:
    """Write ``model`` (class, config, params), ``optimizer``, ``scheduler`` and ``extra`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (conventionally ``*.npz``; no suffix is added).
    model : MLP, RNN, LSTM or GRU
    optimizer : a ``manual_bp.optim`` optimizer built on ``model.params``, or None
    scheduler : a ``manual_bp.optim`` schedule of ``optimizer``, or None
    extra : dict with str keys, or None
        Values are ndarrays (numeric, stored as arrays) or JSON values (tuples come back as lists).
    """
    path = check_writable(path)
    class_name = _model_class_name(model)
    arrays, described = {}, {}

    def put(key, arr):
        arr = np.asarray(arr)
        if arr.dtype.kind not in "biuf":
            raise TypeError(
                f"{key} must be a numeric array to be saved without pickle; got dtype {arr.dtype}"
            )
        arrays[key] = arr
        described[key] = _describe(arr)

    for k, p in model.params.items():
        put(f"params/{k}", p)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"class": class_name, "config": model.config()},
        "arrays": described,
        "optimizer": None,
        "scheduler": None,
        "extra": {},
        "extra_arrays": [],
    }
    if optimizer is not None:
        if OPTIMIZERS.get(type(optimizer).__name__) is not type(optimizer):
            raise TypeError(
                f"optimizer must be one of manual_bp's {sorted(OPTIMIZERS)}; "
                f"got {type(optimizer).__name__}"
            )
        if optimizer.params is not model.params:
            raise ValueError(
                "optimizer was built on a different params dict than model.params; save the pair "
                "that trains together"
            )
        sd = optimizer.state_dict()
        for b, bufs in sd["state"].items():
            for k, arr in bufs.items():
                put(f"optimizer/{b}/{k}", arr)
        meta["optimizer"] = {
            "class": type(optimizer).__name__,
            "config": sd["config"],
            "step_count": sd["step_count"],
            "buffers": {b: list(bufs) for b, bufs in sd["state"].items()},
        }
    if scheduler is not None:
        if SCHEDULERS.get(type(scheduler).__name__) is not type(scheduler):
            raise TypeError(
                f"scheduler must be one of manual_bp.optim's {sorted(SCHEDULERS)}; "
                f"got {type(scheduler).__name__}"
            )
        if optimizer is None or scheduler.optimizer is not optimizer:
            raise ValueError("scheduler must be saved together with the optimizer it schedules")
        meta["scheduler"] = {"class": type(scheduler).__name__, "state": scheduler.state_dict()}
    if extra is not None:
        if not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra):
            raise TypeError(f"extra must be a dict with str keys; got {type(extra).__name__}")
        for k, v in extra.items():
            if isinstance(v, np.ndarray):
                put(f"extra/{k}", v)
                meta["extra_arrays"].append(k)
            else:
                _json(f"extra[{k!r}]", v)
                meta["extra"][k] = v
    _json("model.config()", meta["model"]["config"])
    arrays = {"meta": np.array(_json("checkpoint metadata", meta)), **arrays}
    _atomic_write(path, arrays)


def check_writable(path) -> str:
    """``path`` as a str, once its directory exists and is writable and it is not itself a directory.

    Raises TypeError for a path that is not a str or os.PathLike, FileNotFoundError / NotADirectoryError /
    PermissionError / IsADirectoryError naming ``path`` otherwise: before any work, so that a long run is not
    lost to a typo at its end.
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__} {path!r}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise FileNotFoundError("cannot write to an empty path ''")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(directory):
        raise FileNotFoundError(f"cannot write {path}: the directory {directory} does not exist")
    if not os.path.isdir(directory):
        raise NotADirectoryError(f"cannot write {path}: {directory} is not a directory")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path}: it is a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {path}: the directory {directory} is not writable")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _renamed(exc: OSError, path: str) -> OSError:
    """The same kind of OSError, saying which of the user's paths failed (not the temporary file)."""
    why = exc.strerror or str(exc)
    return type(exc)(exc.errno, f"cannot write {path}: {why}") if exc.errno else type(exc)(
        f"cannot write {path}: {why}")


def _atomic_write(path: str, arrays: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _renamed(exc, path) from exc
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as open(path, "w") would make it (mkstemp makes 0600)
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):  # name the user's path, not the temporary file's
            raise _renamed(exc, path) from exc
        raise
    try:  # make the rename itself durable (POSIX); not possible everywhere, and not needed for atomicity
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# ---------------------------------------------------------------------------------------------- load
def _read_all(path: str) -> dict:
    """Every member of the npz as an array, with any reading failure turned into a ValueError."""
    with open(path, "rb") as f:  # FileNotFoundError and PermissionError stay what they are
        head = f.read(4)
        f.seek(0)
        if head != b"PK\x03\x04":  # every .npz is a zip archive; anything else is plainly something else
            if head == b"\x93NUM":
                kind = "a .npy file: it holds one array, not an .npz archive"
            else:
                kind = f"a file starting with {head!r}" if head else "an empty file"
            raise ValueError(
                f"{path} is not a manual-bp checkpoint: checkpoints are .npz (zip) archives, and this is "
                f"{kind}"
            )
        # Any failure to parse the file means it is not a valid checkpoint: a damaged zip can raise
        # BadZipFile, EOFError, NotImplementedError (a garbled version field), struct.error, RuntimeError...
        try:
            z = np.load(f, allow_pickle=False)
        except Exception as exc:
            raise ValueError(f"{path} is not a readable manual-bp checkpoint (.npz): {exc}") from exc
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"{path} is not a manual-bp checkpoint: it holds one array, not an .npz archive")
        with z:
            out = {}
            for key in z.files:
                try:
                    out[key] = z[key]
                except Exception as exc:
                    raise ValueError(
                        f"{path}: array {key!r} cannot be read (truncated or corrupted?): {exc}"
                    ) from exc
            return out


def _check_meta(path, arrays) -> dict:
    if "meta" not in arrays:
        raise ValueError(
            f"{path} is not a manual-bp checkpoint: it has no 'meta' entry (arrays: {sorted(arrays)})"
        )
    raw = arrays["meta"]
    if raw.dtype.kind != "U" or raw.shape != ():
        raise ValueError(
            f"{path}: 'meta' must be a 0-d unicode array; got dtype {raw.dtype}, shape {raw.shape}"
        )
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: 'meta' is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{path}: format must be {FORMAT!r}; got {got!r}")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path}: checkpoint version must be {VERSION}; got {meta.get('version')!r}")
    keys = {"format", "version", "model", "arrays", "optimizer", "scheduler", "extra", "extra_arrays"}
    if set(meta) != keys:
        raise ValueError(f"{path}: metadata must have keys {sorted(keys)}; got {sorted(meta)}")
    described = meta["arrays"]
    if not isinstance(described, dict):
        raise ValueError(f"{path}: metadata 'arrays' must be a dict")
    stored = set(arrays) - {"meta"}
    if stored != set(described):
        raise ValueError(
            f"{path}: arrays do not match the metadata; missing {sorted(set(described) - stored)}, "
            f"unexpected {sorted(stored - set(described))}"
        )
    for key, d in described.items():
        arr = arrays[key]
        if not isinstance(d, dict) or set(d) != {"shape", "dtype", "sha256"}:
            raise ValueError(f"{path}: metadata for {key!r} must have shape, dtype and sha256; got {d!r}")
        if list(arr.shape) != d["shape"] or arr.dtype.str != d["dtype"]:
            raise ValueError(
                f"{path}: {key!r} must have shape {tuple(d['shape'])} and dtype {d['dtype']}; "
                f"got shape {arr.shape}, dtype {arr.dtype.str}"
            )
        if _digest(arr) != d["sha256"]:
            raise ValueError(
                f"{path}: {key!r} is corrupted (its SHA-256 does not match the one saved with it)"
            )
    return meta


def _build_model(path, meta, arrays):
    spec = meta["model"]
    if not isinstance(spec, dict) or set(spec) != {"class", "config"}:
        raise ValueError(f"{path}: metadata 'model' must have class and config; got {spec!r}")
    name, config = spec["class"], spec["config"]
    cls = MODELS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"{path}: model class {name!r} is not a manual_bp model")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: model config must be a dict; got {config!r}")
    try:
        model = cls(**config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {name}(**{config}) cannot be built from the saved config: {exc}") from exc
    if model.config() != config:
        raise ValueError(f"{path}: {name} rebuilt from {config} reports config {model.config()}")
    saved = {k[len("params/") :]: a for k, a in arrays.items() if k.startswith("params/")}
    if set(saved) != set(model.params):
        raise ValueError(
            f"{path}: {name}({config}) has parameters {sorted(model.params)}; the file has {sorted(saved)}"
        )
    for k, p in model.params.items():
        arr = saved[k]
        if arr.shape != p.shape or arr.dtype != p.dtype:
            raise ValueError(
                f"{path}: params/{k} must have shape {p.shape} and dtype {p.dtype} for {name}({config}); "
                f"got shape {arr.shape}, dtype {arr.dtype}"
            )
    for k in model.params:
        model.params[k] = np.array(saved[k], dtype=model.params[k].dtype, copy=True)
    return model


def _build_optimizer(path, meta, arrays, model):
    spec = meta["optimizer"]
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) != {"class", "config", "step_count", "buffers"}:
        raise ValueError(f"{path}: metadata 'optimizer' must have class, config, step_count and buffers")
    cls = OPTIMIZERS.get(spec["class"]) if isinstance(spec["class"], str) else None
    if cls is None:
        raise ValueError(
            f"{path}: optimizer class must be one of {sorted(OPTIMIZERS)}; got {spec['class']!r}"
        )
    buffers = spec["buffers"]
    if not isinstance(buffers, dict) or not isinstance(spec["config"], dict):
        raise ValueError(f"{path}: optimizer buffers and config must be dicts")
    state = {}
    for b, names in buffers.items():
        state[b] = {}
        for k in names:
            key = f"optimizer/{b}/{k}"
            if key not in arrays:
                raise ValueError(f"{path}: optimizer buffer {key!r} is listed but missing")
            state[b][k] = arrays[key]
    listed = {f"optimizer/{b}/{k}" for b, names in buffers.items() for k in names}
    stray = sorted(k for k in arrays if k.startswith("optimizer/") and k not in listed)
    if stray:
        raise ValueError(f"{path}: optimizer arrays {stray} are not listed in the metadata")
    try:
        opt = cls(model if getattr(cls, "takes_model", False) else model.params, **spec["config"])
        opt.load_state_dict({"config": spec["config"], "step_count": spec["step_count"], "state": state})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the saved {spec['class']} state does not fit the model: {exc}") from exc
    return opt


def _build_scheduler(path, meta, optimizer):
    spec = meta["scheduler"]
    if spec is None:
        return None
    if not isinstance(spec, dict) or set(spec) != {"class", "state"} or not isinstance(spec["state"], dict):
        raise ValueError(f"{path}: metadata 'scheduler' must have class and state")
    cls = SCHEDULERS.get(spec["class"]) if isinstance(spec["class"], str) else None
    if cls is None:
        raise ValueError(
            f"{path}: scheduler class must be one of {sorted(SCHEDULERS)}; got {spec['class']!r}"
        )
    if optimizer is None:
        raise ValueError(f"{path}: a scheduler was saved without its optimizer")
    try:
        config = spec["state"].get("config")
        sched = cls(optimizer, **(config if isinstance(config, dict) else {}))
        sched.load_state_dict(spec["state"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the saved {spec['class']} state is invalid: {exc}") from exc
    return sched


def load(path) -> Checkpoint:
    """Read a checkpoint written by ``save``; return ``Checkpoint(model, optimizer, scheduler, extra)``.

    The model is a fresh instance of the saved class, built from the saved ``config()`` and given the saved
    parameters; the optimizer (if saved) is built on ``model.params`` with its hyper-parameters, step count
    and buffers; the schedule (if saved) on that optimizer. Raises ``ValueError`` for any invalid file.
    """
    path = os.fspath(path)
    arrays = _read_all(path)
    meta = _check_meta(path, arrays)
    model = _build_model(path, meta, arrays)
    opt = _build_optimizer(path, meta, arrays, model)
    sched = _build_scheduler(path, meta, opt)
    extra = meta["extra"]
    names = meta["extra_arrays"]
    if not isinstance(extra, dict) or not isinstance(names, list):
        raise ValueError(f"{path}: metadata 'extra' must be a dict and 'extra_arrays' a list")
    for k in names:
        if f"extra/{k}" not in arrays:
            raise ValueError(f"{path}: extra array {k!r} is listed but missing")
        extra[k] = arrays[f"extra/{k}"]
    stray = sorted(k for k in arrays if k != "meta" and not k.startswith(("params/", "optimizer/", "extra/")))
    stray += sorted(k for k in arrays if k.startswith("extra/") and k[len("extra/") :] not in names)
    if stray:
        raise ValueError(f"{path}: unexpected arrays {stray}")
    return Checkpoint(model, opt, sched, extra)


class EveryEpoch:
    """A ``fit`` / ``fit_stream`` callback that saves a checkpoint after every epoch.

    ``fit(model, opt, X, Y, epochs=10, callbacks=[EveryEpoch("run.npz")])`` writes ``run.npz`` (atomically)
    with the model, optimizer, schedule and ``extra["fit"]``, the keyword arguments that continue the run
    from the last finished epoch. The path is checked when the callback is made, before any training.
    """

    def __init__(self, path):
        self.path = check_writable(path)

    def __call__(self, record, run) -> None:
        save(self.path, run.model, run.optimizer, run.scheduler, extra=run.resume)

    def __repr__(self):
        return f"EveryEpoch({self.path!r})"
