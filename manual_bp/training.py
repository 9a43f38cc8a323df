"""Training loops: ``fit`` (shuffled mini-batches, every model) and ``fit_stream`` (one long sequence).

``fit`` runs the seed's algorithm: for each epoch, shuffle the training set, split it into mini-batches, and
update the parameters once per mini-batch with that batch's mean gradient (what ``loss_and_grad`` returns,
"not after every sample: too unstable"):

    (FIT1)  pi_e = default_rng([seed, e]).permutation(N)      epoch e = 0, 1, ...: the only randomness
    (FIT2)  for each batch B of pi_e (size batch_size; the last may be smaller):
              E_B, g_B = loss_and_grad(X[B], Y[B])            g_B the batch mean gradient
              optimizer.step(g_B)                             one update per batch
    (FIT3)  loss_e = sum_B |B| E_B / N                          the epoch's running mean loss
    (FIT4)  scheduler.step()                                    once per epoch, after its updates

Samples are rows (axis 0) for the MLP; recurrent models (RNN, LSTM, GRU) are time-major, ``X : (T, N, ...)``,
``Y : (T, N[, K])`` and ``mask : (T, N)``, and a batch is a set of sequences (axis 1), each starting from the
zero state.

``fit_stream`` trains a recurrent model on one long sequence (text), truncated BPTT as practitioners run it:

    (FS1)  the stream of length L is cut into n_streams contiguous pieces of M = floor(L / n_streams) steps,
          side by side as a batch: ``Xs : (M, n_streams, ...)`` (the remainder is dropped)
    (FS2)  chunk k holds the steps [k T, (k+1) T) (the last chunk may be shorter)
    (FS3)  E_k, g_k, s_k = loss_and_grad(X_k, Y_k, h0=s_{k-1}, return_state=True);  s_0 = zeros at each epoch
    (FS4)  optimizer.step(g_k)          s_k is carried into chunk k+1 as an input: no gradient crosses over
    (FS5)  loss_e = sum_k E_k / M       the mean loss per time step (nats per character for a language model)

Determinism: the same seed and data give the same numbers bit for bit on the same machine (no clocks, no
global RNG). Because the shuffle of epoch e depends only on ``(seed, e)``, a run resumed at an epoch boundary
from a checkpoint (``callbacks=[checkpoint.EveryEpoch(path)]`` saves one after every epoch, with
``extra["fit"]`` holding the keyword arguments that continue it) follows exactly the same trajectory as one
that never stopped.

The loop owns no files and prints nothing unless asked (``progress``). After each epoch it calls each of
``callbacks`` as ``cb(record, run)``, where ``run`` is a :class:`Run`: the model, optimizer, scheduler, the
history so far and ``resume``, the keyword arguments that continue the run from here. The data are validated
before the first update by the model's own ``validate`` (shapes, dtypes, ranges, finiteness: no forward
pass), and the large per-call arrays of recurrent passes live in one ``Workspace`` for the run, dropped at the
end. A loss or gradient that stops being finite stops the run with a ValueError that names the epoch and the
batch (the parameters then hold the last finite update).

History: a list with one dict per epoch: ``epoch`` (1-based), ``lr`` (used during the epoch), ``loss`` (T3 or
R5), and, when asked for or given, ``train_loss``/``train_accuracy`` (the whole training set at the end of the
epoch) and ``val_loss``/``val_accuracy``. Accuracy is reported only where it means something: softmax
classifiers, a single 0/1 output (sigmoid or squared error on 0/1 targets), one-hot targets for squared
error, and recurrent models with cross-entropy (per time step, masked steps left out).
"""

from __future__ import annotations

import math
import sys
import time
from typing import NamedTuple

import numpy as np

from ._validation import check_int
from .optim import LRScheduler, Optimizer
from .recurrent import Workspace

#: samples per forward pass when evaluating (the training batch size is used if it is larger)
EVAL_BATCH = 1024


# ---------------------------------------------------------------------------------------------- helpers
class Run(NamedTuple):
    """What a callback sees after each epoch (see the module docstring)."""

    model: object
    optimizer: Optimizer
    scheduler: object
    history: list
    resume: dict  # {"fit": kwargs} or {"fit_stream": kwargs}: what continues the run from this epoch


def _is_sequence_model(model) -> bool:
    """Recurrent models take sequences (batch along axis 1, or 0 if batch-first); the MLP samples as rows."""
    return model.BATCH_AXIS == 1


def _batch_axis(model) -> int:
    """The axis of X, Y and the mask that indexes samples: the class's, or a batch-first model's own."""
    return getattr(model, "batch_axis", model.BATCH_AXIS)


class _Evaluating:
    """Evaluation runs without dropout (torch's ``model.eval()``), and leaves the model's mode as it was."""

    def __init__(self, model):
        self.model = model
        self.was_training = bool(getattr(model, "training", False)) and bool(getattr(model, "dropout", 0))

    def __enter__(self):
        if self.was_training:
            self.model.eval()

    def __exit__(self, *exc):
        if self.was_training:
            self.model.train()


def _check_bool(name, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {type(value).__name__} {value!r}")
    return bool(value)


def _check_model_and_optimizer(model, optimizer, scheduler):
    if (
        not isinstance(getattr(model, "params", None), dict)
        or not callable(getattr(model, "loss_and_grad", None))
        or not callable(getattr(model, "validate", None))
        or getattr(model, "BATCH_AXIS", None) not in (0, 1)
    ):
        raise TypeError(
            f"model must be a manual_bp model (params, loss_and_grad, validate, BATCH_AXIS); "
            f"got {type(model).__name__}"
        )
    if getattr(optimizer, "takes_model", False):  # Hessian-free: built on the model, steps on a batch
        if getattr(optimizer, "model", None) is not model:
            raise ValueError("optimizer must be built on this model (HessianFree(model)): optimizer.model "
                             "is not model")
        if scheduler is not None:
            raise ValueError("a learning-rate schedule does not apply to HessianFree (it has no learning "
                             "rate: its damping adapts by itself); pass scheduler=None")
        return
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be a manual_bp optimizer (manual_bp.optim, or HessianFree); "
            f"got {type(optimizer).__name__}"
        )
    if optimizer.params is not model.params:
        raise ValueError(
            "optimizer must be built on this model's own params dict (optimizer.params is not "
            "model.params), or its updates would not reach the model"
        )
    if scheduler is not None:
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(f"scheduler must be a manual_bp.optim schedule; got {type(scheduler).__name__}")
        if scheduler.optimizer is not optimizer:
            raise ValueError("scheduler must schedule the optimizer passed to fit")


def _check_epochs(epochs, initial_epoch, history):
    epochs = check_int("epochs", epochs, minimum=0)
    initial_epoch = check_int("initial_epoch", initial_epoch, minimum=0)
    if initial_epoch > epochs:
        raise ValueError(f"initial_epoch must be <= epochs={epochs}; got {initial_epoch}")
    if history is None:
        history = []
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise TypeError(
            f"history must be a list of dicts (the one fit returned); got {type(history).__name__}"
        )
    if len(history) != initial_epoch:
        raise ValueError(
            f"history must have one entry per finished epoch, initial_epoch={initial_epoch}; "
            f"got {len(history)} entries"
        )
    return epochs, initial_epoch, [dict(h) for h in history]


def _take(a, idx, axis):
    return None if a is None else (a[idx] if axis == 0 else a[:, idx])


def _accuracy_kind(model, Y):
    """How to score predictions against ``Y`` ("labels", "onehot", "binary"); None if meaningless."""
    Y = np.asarray(Y)
    if _is_sequence_model(model):
        return "labels" if getattr(model, "loss_name", None) == "cross_entropy" else None
    K = model.sizes[-1]
    if model.loss_name == "cross_entropy":
        return "labels" if Y.ndim == 1 else "onehot"
    if Y.dtype.kind not in "biuf":
        return None
    binary = bool(np.isin(Y, (0, 1)).all())
    if K == 1 and binary:
        return "binary"
    if K > 1 and binary and Y.ndim == 2 and bool((Y.sum(axis=1) == 1).all()):
        return "onehot"
    return None


def _hits(model, kind, outputs, Y, mask=None):
    """(number of correct predictions, number scored) for one batch, from its outputs ``a^(L)`` / ``o_t``."""
    Y = np.asarray(Y)
    if _is_sequence_model(model):
        hit = outputs.argmax(axis=-1) == Y
        keep = np.ones(hit.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        return int((hit & keep).sum()), int(keep.sum())
    if kind == "binary":
        return int(((outputs[:, 0] > 0.5) == (Y.reshape(-1) == 1)).sum()), len(Y)
    target = Y if kind == "labels" else Y.argmax(axis=1)
    return int((outputs.argmax(axis=1) == target).sum()), len(Y)


def _correct(model, kind, X, Y, mask=None):
    outputs = model.forward(X)
    if _is_sequence_model(model):
        outputs = outputs[0]
    return _hits(model, kind, outputs, Y, mask)


def accuracy(model, X, Y, mask=None):
    """Fraction of correct predictions, or None where accuracy means nothing (see the module docstring)."""
    kind = _accuracy_kind(model, Y)
    if kind is None:
        return None
    hits, total = _correct(model, kind, X, Y, mask)
    return hits / total if total else None


def evaluate(model, X, Y, mask=None, batch_size=EVAL_BATCH, workspace=None) -> dict:
    """``{"loss": ..., "accuracy": ...}`` over a whole data set, in batches (accuracy may be None).

    The loss is the model's batch mean over all samples (sequences for recurrent models), weighted by batch;
    one forward pass per batch gives both.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    with _Evaluating(model):
        return _evaluate(model, X, Y, mask, batch_size, workspace)


def _evaluate(model, X, Y, mask, batch_size, workspace) -> dict:
    seq = _is_sequence_model(model)
    axis = _batch_axis(model)
    X, Y = np.asarray(X), np.asarray(Y)
    mask = None if mask is None else np.asarray(mask)
    N = X.shape[axis]
    kind = _accuracy_kind(model, Y)
    total, hits, scored = 0.0, 0, 0
    for start in range(0, N, batch_size):
        idx = slice(start, min(start + batch_size, N))
        Xb, Yb, mb = _take(X, idx, axis), _take(Y, idx, axis), _take(mask, idx, axis)
        n = Xb.shape[axis]
        if seq:
            E, outputs = model.loss(Xb, Yb, mask=mb, return_outputs=True, workspace=workspace)
        else:
            E, outputs = model.loss(Xb, Yb, return_outputs=True)
        total += n * E
        if kind is not None:
            h, s = _hits(model, kind, outputs, Yb, mb)
            hits, scored = hits + h, scored + s
    return {"loss": total / N, "accuracy": (hits / scored) if (kind is not None and scored) else None}


class Progress:
    """A plain-text progress bar on stderr: ``\\r`` updates on a terminal, one line per epoch otherwise."""

    def __init__(self, enabled, file=None, width=24, interval=0.1):
        self.enabled = enabled
        self.file = sys.stderr if file is None else file
        self.width, self.interval = width, interval
        self.tty = bool(getattr(self.file, "isatty", lambda: False)())
        self._last = 0.0

    def start(self, epoch, epochs, total):
        self.epoch, self.epochs, self.total = epoch, epochs, total
        self.t0 = self._last = time.perf_counter()

    def update(self, done, loss):
        if not (self.enabled and self.tty):
            return
        now = time.perf_counter()
        if now - self._last < self.interval and done < self.total:
            return
        self._last = now
        filled = int(self.width * done / max(self.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        self.file.write(
            f"\repoch {self.epoch}/{self.epochs} [{bar}] {done}/{self.total} loss {loss:.4f} "
            f"{now - self.t0:.1f}s"
        )
        self.file.flush()

    def end(self, record):
        if not self.enabled:
            return
        parts = [
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in record.items()
            if k not in ("epoch",) and v is not None
        ]
        clear = "\r\033[K" if self.tty else ""
        self.file.write(
            f"{clear}epoch {self.epoch}/{self.epochs}: "
            + ", ".join(parts)
            + f" ({time.perf_counter() - self.t0:.1f}s)\n"
        )
        self.file.flush()


def _check_progress(progress):
    """``False``/``True`` (a plain text bar on stderr) or an object with ``start``, ``update`` and ``end``."""
    if isinstance(progress, (bool, np.bool_)):
        return Progress(bool(progress))
    if all(callable(getattr(progress, m, None)) for m in ("start", "update", "end")):
        return progress
    raise TypeError(
        "progress must be True, False or an object with start(epoch, epochs, total), update(done, loss) "
        f"and end(record) methods; got {type(progress).__name__} {progress!r}"
    )


def _check_callbacks(callbacks) -> tuple:
    if callable(callbacks):
        callbacks = (callbacks,)
    if not isinstance(callbacks, (tuple, list)) or not all(callable(cb) for cb in callbacks):
        raise TypeError(
            f"callbacks must be a sequence of callables cb(record, run); got {type(callbacks).__name__}"
        )
    return tuple(callbacks)


def _loss_and_step(model, optimizer, Xb, Yb, kw, where) -> float:
    """(FIT2) One batch: the loss and gradient, then one update; returns the batch loss before the update.

    A first-order optimizer steps on the gradient; Hessian-free (``takes_model``) takes the batch itself and
    computes what it needs (its gradient and Gauss-Newton products) through the model.
    """
    if getattr(optimizer, "takes_model", False):
        kw = {k: v for k, v in kw.items() if k not in ("workspace", "truncate")}  # fit refused a truncation
        try:
            return optimizer.step(Xb, Yb, **kw)["loss_before"]
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
    E, grads = model.loss_and_grad(Xb, Yb, **kw)
    _step(optimizer, E, grads, where)
    return E


def _step(optimizer, E, grads, where):
    """One update; a non-finite loss or gradient stops the run before it reaches the parameters."""
    if not math.isfinite(E):
        raise ValueError(
            f"{where}: the loss is {E}; training diverged (the parameters hold the last finite update): "
            "lower the learning rate or clip the gradients (clip_norm=...)"
        )
    try:
        optimizer.step(grads)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _finish_epoch(record, model, optimizer, scheduler, history, resume, progress, callbacks):
    """Schedule (FIT4), history, report, then each callback with the record and the :class:`Run`.

    ``resume = (key, keyword arguments)``: with the epoch count and the history, what continues the run.
    """
    if scheduler is not None:
        scheduler.step()  # (FIT4)
    history.append(record)
    progress.end(record)
    key, kwargs = resume
    run = Run(model, optimizer, scheduler, history,
              {key: dict(kwargs, initial_epoch=record["epoch"], history=[dict(h) for h in history])})
    for cb in callbacks:
        cb(dict(record), run)


def _validate_data(model, X, Y, mask=None, what="X, Y"):
    """The model's own checks of a whole data set, without a forward pass; names the data set on error."""
    try:
        if _is_sequence_model(model):
            model.validate(X, Y, mask=mask)
        else:
            model.validate(X, Y)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{what}: {exc}") from exc


def _check_time_major(X, Y, mask, what="X"):
    """Batch-first recurrent data, caught where the shapes show it: a (T, N) mask against X (N, T, ...)."""
    if mask is None or X.ndim < 2 or np.ndim(mask) != 2:
        return
    T, N = np.shape(mask)
    if X.shape[:2] == (N, T) and T != N:
        raise ValueError(
            f"{what} has shape {X.shape}, batch-first against mask (T={T}, N={N}): recurrent models are "
            f"time-major, X (T, N, ...) and Y (T, N[, K]); swap the first two axes "
            "(np.swapaxes(X, 0, 1))"
        )


# ---------------------------------------------------------------------------------------------- fit
def fit(
    model,
    optimizer,
    X,
    Y,
    *,
    epochs,
    batch_size=32,
    seed=0,
    shuffle=True,
    mask=None,
    truncate=None,
    validation=None,
    scheduler=None,
    eval_train=False,
    initial_epoch=0,
    history=None,
    progress=False,
    callbacks=(),
) -> list:
    """Train ``model`` by mini-batch gradient descent (FIT1-FIT4); return the history (one dict per epoch).

    Parameters
    ----------
    model : MLP, RNN, LSTM or GRU
    optimizer : a ``manual_bp.optim`` optimizer built on ``model.params``
    X, Y : training data. MLP: ``X : (N, n0)``, ``Y : (N, nL)`` or labels ``(N,)``. Recurrent: time-major
        ``X : (T, N, D)`` floats or ``(T, N)`` token ids, ``Y : (T, N)`` labels or ``(T, N, K)`` floats.
    epochs : int
        Train until this many epochs are done (counting ``initial_epoch`` ones already done).
    batch_size : int
        Samples (sequences) per update; the last batch of an epoch may be smaller.
    seed : int
        The shuffle of epoch e is ``default_rng([seed, e]).permutation(N)`` (FIT1).
    shuffle : bool
        False keeps the data order (and draws nothing).
    mask : (T, N) bool or None
        Recurrent models only: which steps count in the loss (e.g. the last step only).
    truncate : int or None
        Recurrent models only: truncated BPTT within each sequence (``loss_and_grad(truncate=...)``).
    validation : ``(X_val, Y_val)`` or ``(X_val, Y_val, mask_val)``, or None
        Evaluated at the end of each epoch: ``val_loss`` and ``val_accuracy``.
    scheduler : a ``manual_bp.optim`` schedule of ``optimizer``, or None; stepped after each epoch (FIT4).
    eval_train : bool
        Also evaluate the whole training set at the end of each epoch (``train_loss``, ``train_accuracy``).
    initial_epoch, history : resume an interrupted run: the epochs already done and their history.
    progress : bool or object
        False (default): silent. True: a text progress bar on stderr (one summary line per epoch when stderr
        is not a terminal). Or an object with ``start(epoch, epochs, total)``, ``update(done, loss)`` and
        ``end(record)`` (the command line passes a tqdm bar).
    callbacks : sequence of callables ``cb(record, run)``
        Called after each epoch with a copy of its history record and the :class:`Run`.
        ``manual_bp.checkpoint.EveryEpoch(path)`` saves model, optimizer, schedule and ``extra["fit"]`` there
        after every epoch; continue with ``fit(ck.model, ck.optimizer, X, Y, epochs=...,
        scheduler=ck.scheduler, **ck.extra["fit"])``.

    Returns
    -------
    list of dict
        One record per epoch (module docstring). Bad arguments raise before any parameter changes.
    """
    _check_model_and_optimizer(model, optimizer, scheduler)
    epochs, initial_epoch, history = _check_epochs(epochs, initial_epoch, history)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    shuffle = _check_bool("shuffle", shuffle)
    eval_train = _check_bool("eval_train", eval_train)
    progress = _check_progress(progress)
    callbacks = _check_callbacks(callbacks)
    seq = _is_sequence_model(model)
    if not seq and (mask is not None or truncate is not None):
        raise ValueError("mask and truncate apply to recurrent models only; got them for an MLP")
    if truncate is not None and getattr(optimizer, "takes_model", False):
        raise ValueError(f"HessianFree needs the gradient of the loss, and a truncated gradient is not one "
                         f"(it has no Gauss-Newton matrix); got truncate={truncate!r}")
    axis = _batch_axis(model)
    X, Y = np.asarray(X), np.asarray(Y)
    mask = None if mask is None else np.asarray(mask)
    if X.ndim <= axis or Y.ndim <= axis or X.shape[axis] != Y.shape[axis]:
        what = ("(N, ...) with samples as rows" if not seq else
                "(T, N, ...) with the sequences along axis 1" if axis == 1 else
                "(N, T, ...) with the sequences along axis 0 (batch_first=True)")
        raise ValueError(f"X and Y must be {what} and hold the same N; got X {X.shape}, Y {Y.shape}")
    if seq and axis == 1:
        _check_time_major(X, Y, mask)
    N = X.shape[axis]
    _validate_data(model, X, Y, mask)  # the whole data set, before any update; no forward pass
    if validation is not None:
        if (
            not isinstance(validation, (tuple, list))
            or len(validation) not in (2, 3)
            or (len(validation) == 3 and not seq)
        ):
            raise TypeError(
                "validation must be a tuple (X_val, Y_val) or, for recurrent models, (X_val, Y_val, mask_val)"
            )
        validation = tuple(np.asarray(v) if v is not None else None for v in validation)
        if seq and axis == 1:
            _check_time_major(validation[0], validation[1], validation[2] if len(validation) == 3 else None,
                              "X_val")
        _validate_data(model, *validation, what="validation")
    workspace = Workspace()  # the run's reusable per-call arrays (recurrent models), dropped when fit returns
    lg_kw = {"truncate": truncate, "workspace": workspace} if seq else {}
    fit_extra = {"seed": seed, "batch_size": batch_size, "shuffle": shuffle}
    if seq:
        fit_extra["truncate"] = truncate

    for e in range(initial_epoch, epochs):
        perm = np.random.default_rng([seed, e]).permutation(N) if shuffle else np.arange(N)  # (FIT1)
        n_batches = -(-N // batch_size)
        progress.start(e + 1, epochs, n_batches)
        lr = getattr(optimizer, "lr", None)  # None for Hessian-free
        total = 0.0
        for b in range(n_batches):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            Xb, Yb = _take(X, idx, axis), _take(Y, idx, axis)
            kw = dict(lg_kw, mask=_take(mask, idx, axis)) if seq else {}
            E = _loss_and_step(model, optimizer, Xb, Yb, kw, f"epoch {e + 1}, batch {b + 1}/{n_batches}")
            total += len(idx) * E
            progress.update(b + 1, total / min((b + 1) * batch_size, N))
        record = {"epoch": e + 1, "lr": lr, "loss": total / N}  # (FIT3)
        eval_kw = {"batch_size": max(batch_size, EVAL_BATCH), "workspace": workspace}
        if eval_train:
            ev = evaluate(model, X, Y, mask, **eval_kw)
            record["train_loss"], record["train_accuracy"] = ev["loss"], ev["accuracy"]
        if validation is not None:
            ev = evaluate(model, *validation, **eval_kw)
            record["val_loss"], record["val_accuracy"] = ev["loss"], ev["accuracy"]
        _finish_epoch(record, model, optimizer, scheduler, history, ("fit", fit_extra), progress, callbacks)
    return history


# ---------------------------------------------------------------------------------------------- fit_stream
def batchify(stream, n_streams: int) -> np.ndarray:
    """(FS1) Cut a stream ``(L, ...)`` into ``n_streams`` pieces side by side: ``(M, n_streams, ...)``.

    Piece j is ``stream[j*M:(j+1)*M]`` with ``M = L // n_streams``; the last ``L % n_streams`` steps are
    dropped.
    """
    stream = np.asarray(stream)
    n_streams = check_int("n_streams", n_streams, minimum=1)
    if stream.ndim < 1:
        raise ValueError(f"a stream must have a time axis, shape (L, ...); got a scalar {stream!r}")
    M = len(stream) // n_streams
    if M < 1:
        raise ValueError(f"a stream of length {len(stream)} is too short for n_streams={n_streams}")
    pieces = stream[: M * n_streams].reshape((n_streams, M) + stream.shape[1:])
    return np.ascontiguousarray(np.swapaxes(pieces, 0, 1))  # (M, n_streams, ...)


def evaluate_stream(model, X, Y, chunk_length, n_streams=1, workspace=None) -> dict:
    """Loss per step (FS5) and accuracy of a recurrent model over a stream, state carried across chunks.

    One forward pass per chunk gives the loss, the outputs and the state carried into the next chunk.
    """
    chunk_length = check_int("chunk_length", chunk_length, minimum=1)
    with _Evaluating(model):
        return _evaluate_stream(model, X, Y, chunk_length, n_streams, workspace)


def _as_model_layout(model, A):
    """A time-major chunk ``(T, N, ...)`` in the model's layout (batch-first models take ``(N, T, ...)``)."""
    return np.swapaxes(A, 0, 1) if _batch_axis(model) == 0 else A


def _evaluate_stream(model, X, Y, chunk_length, n_streams, workspace) -> dict:
    Xs, Ys = batchify(X, n_streams), batchify(Y, n_streams)
    M = Xs.shape[0]
    total, hits, scored = 0.0, 0, 0
    state = None
    for t0 in range(0, M, chunk_length):
        Xc, Yc = (_as_model_layout(model, A[t0 : t0 + chunk_length]) for A in (Xs, Ys))
        E, P, state = model.loss(Xc, Yc, h0=state, return_outputs=True, return_state=True,
                                 workspace=workspace)
        total += E
        if model.loss_name == "cross_entropy":
            hits += int((P.argmax(axis=-1) == Yc).sum())
            scored += Yc.size
    acc = hits / scored if model.loss_name == "cross_entropy" else None
    return {"loss": total / M, "accuracy": acc}


def fit_stream(
    model,
    optimizer,
    X,
    Y,
    *,
    epochs,
    chunk_length,
    n_streams=1,
    truncate=None,
    validation=None,
    scheduler=None,
    initial_epoch=0,
    history=None,
    progress=False,
    callbacks=(),
    snapshots=None,
) -> list:
    """Train a recurrent model on one long stream by truncated BPTT with carried state (FS1-FS5).

    Parameters
    ----------
    model : RNN, LSTM or GRU
    optimizer : a ``manual_bp.optim`` optimizer built on ``model.params``
    X, Y : the stream, aligned step by step: ``X : (L,)`` token ids or ``(L, D)`` floats, ``Y : (L,)`` labels
        or ``(L, K)`` floats. For a language model over ids ``s``: ``X = s[:-1]``, ``Y = s[1:]``.
    epochs : int
    chunk_length : int
        T, the steps per update; gradients flow back at most to the start of the chunk.
    n_streams : int
        Pieces of the stream trained side by side as a batch (FS1).
    truncate : int or None
        Truncate BPTT further inside each chunk (``loss_and_grad(truncate=...)``).
    validation : ``(X_val, Y_val)`` stream or None: ``val_loss`` (per step) and ``val_accuracy`` each epoch,
        evaluated with the same chunking and carried state.
    scheduler, initial_epoch, history, progress, callbacks : as in ``fit``; the run's ``resume`` (and a
        checkpoint's ``extra["fit_stream"]``) holds the keyword arguments that continue it.
    snapshots : None, ``"sqrt"`` or int: checkpointed BPTT inside each chunk (``loss_and_grad(snapshots=)``),
        so that a chunk of 10,000 steps stores only some states; the same gradients to rounding.

    Returns
    -------
    list of dict
        ``epoch``, ``lr``, ``loss`` (mean per time step, R5) [, ``val_loss``, ``val_accuracy``].
    """
    _check_model_and_optimizer(model, optimizer, scheduler)
    if not _is_sequence_model(model):
        raise TypeError(f"fit_stream trains recurrent models (RNN, LSTM, GRU); got {type(model).__name__}")
    if getattr(optimizer, "takes_model", False):
        raise TypeError("fit_stream needs a first-order optimizer (it carries the state from chunk to chunk "
                        "through loss_and_grad); use fit for HessianFree")
    epochs, initial_epoch, history = _check_epochs(epochs, initial_epoch, history)
    chunk_length = check_int("chunk_length", chunk_length, minimum=1)
    n_streams = check_int("n_streams", n_streams, minimum=1)
    progress = _check_progress(progress)
    callbacks = _check_callbacks(callbacks)
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim < 1 or Y.ndim < 1 or len(X) != len(Y):
        raise ValueError(
            f"X and Y must be streams (L, ...) of the same length L; got X {X.shape}, Y {Y.shape}"
        )
    Xs, Ys = batchify(X, n_streams), batchify(Y, n_streams)  # (FS1) (M, n_streams, ...)
    M = Xs.shape[0]
    _validate_data(model, _as_model_layout(model, Xs), _as_model_layout(model, Ys))  # before any update
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError("validation must be a tuple (X_val, Y_val) of streams")
        validation = (np.asarray(validation[0]), np.asarray(validation[1]))
        if len(validation[0]) != len(validation[1]):
            raise ValueError(
                f"X_val and Y_val must have the same length; got {len(validation[0])} and "
                f"{len(validation[1])}"
            )
        _validate_data(model, *(_as_model_layout(model, batchify(v, n_streams)) for v in validation),
                       what="validation")
    workspace = Workspace()  # the run's reusable per-call arrays, dropped when fit_stream returns
    fit_extra = {"chunk_length": chunk_length, "n_streams": n_streams, "truncate": truncate}
    lg_kw = {"workspace": workspace}
    if snapshots is not None:
        if truncate is not None:
            raise ValueError("snapshots and truncate do not combine: checkpointing recomputes full BPTT "
                             f"inside each chunk; got truncate={truncate!r}")
        from .long_bptt import _check_snapshots  # the same refusal as loss_and_grad(snapshots=...)

        lg_kw["snapshots"] = fit_extra["snapshots"] = _check_snapshots(snapshots)
    n_chunks = -(-M // chunk_length)

    for e in range(initial_epoch, epochs):
        progress.start(e + 1, epochs, n_chunks)
        lr = optimizer.lr
        state = None  # (FS3) s_0 = zeros
        total = 0.0
        for k in range(n_chunks):
            Xc = _as_model_layout(model, Xs[k * chunk_length : (k + 1) * chunk_length])  # (FS2)
            Yc = _as_model_layout(model, Ys[k * chunk_length : (k + 1) * chunk_length])
            E, grads, state = model.loss_and_grad(
                Xc, Yc, h0=state, truncate=truncate, return_state=True, **lg_kw
            )  # (FS3)
            _step(optimizer, E, grads, f"epoch {e + 1}, chunk {k + 1}/{n_chunks}")  # (FS4)
            total += E
            progress.update(k + 1, total / min((k + 1) * chunk_length, M))
        record = {"epoch": e + 1, "lr": lr, "loss": total / M}  # (FS5)
        if validation is not None:
            ev = evaluate_stream(model, *validation, chunk_length=chunk_length, n_streams=n_streams,
                                 workspace=workspace)
            record["val_loss"], record["val_accuracy"] = ev["loss"], ev["accuracy"]
        _finish_epoch(
            record, model, optimizer, scheduler, history, ("fit_stream", fit_extra), progress, callbacks
        )
    return history
