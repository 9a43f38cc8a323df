"""Training loops: ``fit`` (shuffled mini-batches, every model) and ``fit_stream`` (one long sequence).

``fit`` runs the seed's algorithm: for each epoch, shuffle the training set, split it into mini-batches, and
update the parameters once per mini-batch with that batch's mean gradient (what ``loss_and_grad`` returns,
"not after every sample: too unstable"):

    (T1)  pi_e = default_rng([seed, e]).permutation(N)      epoch e = 0, 1, ...: the only randomness
    (T2)  for each batch B of pi_e (size batch_size; the last may be smaller):
              E_B, g_B = loss_and_grad(X[B], Y[B])            g_B the batch mean gradient
              optimizer.step(g_B)                             one update per batch
    (T3)  loss_e = sum_B |B| E_B / N                          the epoch's running mean loss
    (T4)  scheduler.step()                                    once per epoch, after its updates

Samples are rows (axis 0) for the MLP; recurrent models (RNN, LSTM, GRU) are time-major, ``X : (T, N, ...)``,
``Y : (T, N[, K])`` and ``mask : (T, N)``, and a batch is a set of sequences (axis 1), each starting from the
zero state.

``fit_stream`` trains a recurrent model on one long sequence (text), truncated BPTT as practitioners run it:

    (R1)  the stream of length L is cut into n_streams contiguous pieces of M = floor(L / n_streams) steps,
          side by side as a batch: ``Xs : (M, n_streams, ...)`` (the remainder is dropped)
    (R2)  chunk k holds the steps [k T, (k+1) T) (the last chunk may be shorter)
    (R3)  E_k, g_k, s_k = loss_and_grad(X_k, Y_k, h0=s_{k-1}, return_state=True);  s_0 = zeros at each epoch
    (R4)  optimizer.step(g_k)          s_k is carried into chunk k+1 as an input: no gradient crosses over
    (R5)  loss_e = sum_k E_k / M       the mean loss per time step (nats per character for a language model)

Determinism: the same seed and data give the same numbers bit for bit on the same machine (no clocks, no
global RNG). Because the shuffle of epoch e depends only on ``(seed, e)``, a run resumed at an epoch boundary
from a checkpoint (``checkpoint=path`` saves one after every epoch, with ``extra["fit"]`` holding the keyword
arguments that continue it) follows exactly the same trajectory as one that never stopped.

History: a list with one dict per epoch: ``epoch`` (1-based), ``lr`` (used during the epoch), ``loss`` (T3 or
R5), and, when asked for or given, ``train_loss``/``train_accuracy`` (the whole training set at the end of the
epoch) and ``val_loss``/``val_accuracy``. Accuracy is reported only where it means something: softmax
classifiers, a single 0/1 output (sigmoid or squared error on 0/1 targets), one-hot targets for squared
error, and recurrent models with cross-entropy (per time step, masked steps left out).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from . import checkpoint as _checkpoint
from ._validation import check_int
from .mlp import MLP
from .optim import LRScheduler, Optimizer

#: samples per forward pass when evaluating (the training batch size is used if it is larger)
EVAL_BATCH = 1024


# ---------------------------------------------------------------------------------------------- helpers
def _is_sequence_model(model) -> bool:
    """Recurrent models are time-major (batch along axis 1); the MLP has samples as rows."""
    return not isinstance(model, MLP)


def _check_bool(name, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {type(value).__name__} {value!r}")
    return bool(value)


def _check_model_and_optimizer(model, optimizer, scheduler):
    if not isinstance(getattr(model, "params", None), dict) or not callable(
        getattr(model, "loss_and_grad", None)
    ):
        raise TypeError(
            f"model must be a manual_bp model (params and loss_and_grad); got {type(model).__name__}"
        )
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a manual_bp.optim optimizer; got {type(optimizer).__name__}")
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


def _correct(model, kind, X, Y, mask=None):
    """(number of correct predictions, number scored) for one batch."""
    Y = np.asarray(Y)
    if _is_sequence_model(model):
        P, _ = model.forward(X)
        hit = P.argmax(axis=-1) == Y
        keep = np.ones(hit.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        return int((hit & keep).sum()), int(keep.sum())
    if kind == "binary":
        a = model.forward(X)
        return int(((a[:, 0] > 0.5) == (Y.reshape(-1) == 1)).sum()), len(Y)
    a = model.forward(X)
    target = Y if kind == "labels" else Y.argmax(axis=1)
    return int((a.argmax(axis=1) == target).sum()), len(Y)


def accuracy(model, X, Y, mask=None):
    """Fraction of correct predictions, or None where accuracy means nothing (see the module docstring)."""
    kind = _accuracy_kind(model, Y)
    if kind is None:
        return None
    hits, total = _correct(model, kind, X, Y, mask)
    return hits / total if total else None


def evaluate(model, X, Y, mask=None, batch_size=EVAL_BATCH) -> dict:
    """``{"loss": ..., "accuracy": ...}`` over a whole data set, in batches (accuracy may be None).

    The loss is the model's batch mean over all samples (sequences for recurrent models), weighted by batch.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seq = _is_sequence_model(model)
    axis = 1 if seq else 0
    X, Y = np.asarray(X), np.asarray(Y)
    mask = None if mask is None else np.asarray(mask)
    N = X.shape[axis]
    kind = _accuracy_kind(model, Y)
    total, hits, scored = 0.0, 0, 0
    for start in range(0, N, batch_size):
        idx = slice(start, min(start + batch_size, N))
        Xb, Yb, mb = _take(X, idx, axis), _take(Y, idx, axis), _take(mask, idx, axis)
        n = Xb.shape[axis]
        E = model.loss(Xb, Yb, mask=mb) if seq else model.loss(Xb, Yb)
        total += n * E
        if kind is not None:
            h, s = _correct(model, kind, Xb, Yb, mb)
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


def _step(optimizer, grads, where):
    try:
        optimizer.step(grads)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _finish_epoch(record, model, optimizer, scheduler, history, checkpoint, resume, progress, callback):
    """Schedule (T4), history, checkpoint (``resume = (extra key, fit keyword arguments)``), report."""
    if scheduler is not None:
        scheduler.step()  # (T4)
    history.append(record)
    if checkpoint is not None:
        key, kwargs = resume
        extra = {key: dict(kwargs, initial_epoch=record["epoch"], history=history)}
        _checkpoint.save(checkpoint, model, optimizer, scheduler, extra=extra)
    progress.end(record)
    if callback is not None:
        callback(dict(record))


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
    checkpoint=None,
    progress=True,
    callback=None,
) -> list:
    """Train ``model`` by mini-batch gradient descent (T1-T4); return the history (one dict per epoch).

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
        The shuffle of epoch e is ``default_rng([seed, e]).permutation(N)`` (T1).
    shuffle : bool
        False keeps the data order (and draws nothing).
    mask : (T, N) bool or None
        Recurrent models only: which steps count in the loss (e.g. the last step only).
    truncate : int or None
        Recurrent models only: truncated BPTT within each sequence (``loss_and_grad(truncate=...)``).
    validation : ``(X_val, Y_val)`` or ``(X_val, Y_val, mask_val)``, or None
        Evaluated at the end of each epoch: ``val_loss`` and ``val_accuracy``.
    scheduler : a ``manual_bp.optim`` schedule of ``optimizer``, or None; stepped after each epoch (T4).
    eval_train : bool
        Also evaluate the whole training set at the end of each epoch (``train_loss``, ``train_accuracy``).
    initial_epoch, history : resume an interrupted run (see ``checkpoint``): the epochs already done and
        their history.
    checkpoint : path or None
        Save model, optimizer, schedule and ``extra["fit"]`` there (atomically) after every epoch; continue
        with ``fit(ck.model, ck.optimizer, X, Y, epochs=..., scheduler=ck.scheduler, **ck.extra["fit"])``.
    progress : bool
        A text progress bar on stderr (one summary line per epoch when stderr is not a terminal).
    callback : callable or None
        Called with a copy of each epoch's history record.

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
    progress = Progress(_check_bool("progress", progress))
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None; got {type(callback).__name__}")
    if checkpoint is not None:
        checkpoint = os.fspath(checkpoint)
    seq = _is_sequence_model(model)
    if not seq and (mask is not None or truncate is not None):
        raise ValueError("mask and truncate apply to recurrent models only; got them for an MLP")
    axis = 1 if seq else 0
    X, Y = np.asarray(X), np.asarray(Y)
    mask = None if mask is None else np.asarray(mask)
    if X.ndim <= axis or Y.ndim <= axis or X.shape[axis] != Y.shape[axis]:
        what = "(T, N, ...) with the sequences along axis 1" if seq else "(N, ...) with samples as rows"
        raise ValueError(f"X and Y must be {what} and hold the same N; got X {X.shape}, Y {Y.shape}")
    N = X.shape[axis]
    # Validate the whole data set once, through the model's own checks, before any update.
    if seq:
        model.loss(X, Y, mask=mask)
    else:
        model.loss(X, Y)
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
        evaluate(model, *validation, batch_size=max(batch_size, EVAL_BATCH))
    lg_kw = {"truncate": truncate} if seq else {}
    fit_extra = {"seed": seed, "batch_size": batch_size, "shuffle": shuffle}
    if seq:
        fit_extra["truncate"] = truncate

    for e in range(initial_epoch, epochs):
        perm = np.random.default_rng([seed, e]).permutation(N) if shuffle else np.arange(N)  # (T1)
        n_batches = -(-N // batch_size)
        progress.start(e + 1, epochs, n_batches)
        lr = optimizer.lr
        total = 0.0
        for b in range(n_batches):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            Xb, Yb = _take(X, idx, axis), _take(Y, idx, axis)
            if seq:
                E, grads = model.loss_and_grad(Xb, Yb, mask=_take(mask, idx, axis), **lg_kw)  # (T2)
            else:
                E, grads = model.loss_and_grad(Xb, Yb)  # (T2)
            _step(optimizer, grads, f"epoch {e + 1}, batch {b + 1}/{n_batches}")  # (T2)
            total += len(idx) * E
            progress.update(b + 1, total / min((b + 1) * batch_size, N))
        record = {"epoch": e + 1, "lr": lr, "loss": total / N}  # (T3)
        if eval_train:
            ev = evaluate(model, X, Y, mask, batch_size=max(batch_size, EVAL_BATCH))
            record["train_loss"], record["train_accuracy"] = ev["loss"], ev["accuracy"]
        if validation is not None:
            ev = evaluate(model, *validation, batch_size=max(batch_size, EVAL_BATCH))
            record["val_loss"], record["val_accuracy"] = ev["loss"], ev["accuracy"]
        _finish_epoch(
            record, model, optimizer, scheduler, history, checkpoint, ("fit", fit_extra), progress, callback
        )
    return history


# ---------------------------------------------------------------------------------------------- fit_stream
def batchify(stream, n_streams: int) -> np.ndarray:
    """(R1) Cut a stream ``(L, ...)`` into ``n_streams`` pieces side by side: ``(M, n_streams, ...)``.

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


def _final_state(S):
    """The last of ``forward``'s states, in the form ``h0`` accepts ((N, H), or a tuple for the LSTM)."""
    if isinstance(S, tuple):
        return tuple(s[-1].copy() for s in S)
    return S[-1].copy()


def evaluate_stream(model, X, Y, chunk_length, n_streams=1) -> dict:
    """Loss per step (R5) and accuracy of a recurrent model over a stream, state carried across chunks."""
    chunk_length = check_int("chunk_length", chunk_length, minimum=1)
    Xs, Ys = batchify(X, n_streams), batchify(Y, n_streams)
    M = Xs.shape[0]
    total, hits, scored = 0.0, 0, 0
    state = None
    for t0 in range(0, M, chunk_length):
        Xc, Yc = Xs[t0 : t0 + chunk_length], Ys[t0 : t0 + chunk_length]
        total += model.loss(Xc, Yc, h0=state)
        P, S = model.forward(Xc, h0=state)
        state = _final_state(S)
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
    checkpoint=None,
    progress=True,
    callback=None,
) -> list:
    """Train a recurrent model on one long stream by truncated BPTT with carried state (R1-R5).

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
        Pieces of the stream trained side by side as a batch (R1).
    truncate : int or None
        Truncate BPTT further inside each chunk (``loss_and_grad(truncate=...)``).
    validation : ``(X_val, Y_val)`` stream or None: ``val_loss`` (per step) and ``val_accuracy`` each epoch,
        evaluated with the same chunking and carried state.
    scheduler, initial_epoch, history, checkpoint, progress, callback : as in ``fit``; ``extra["fit_stream"]``
        holds the keyword arguments that continue a checkpointed run.

    Returns
    -------
    list of dict
        ``epoch``, ``lr``, ``loss`` (mean per time step, R5) [, ``val_loss``, ``val_accuracy``].
    """
    _check_model_and_optimizer(model, optimizer, scheduler)
    if not _is_sequence_model(model):
        raise TypeError(f"fit_stream trains recurrent models (RNN, LSTM, GRU); got {type(model).__name__}")
    epochs, initial_epoch, history = _check_epochs(epochs, initial_epoch, history)
    chunk_length = check_int("chunk_length", chunk_length, minimum=1)
    n_streams = check_int("n_streams", n_streams, minimum=1)
    progress = Progress(_check_bool("progress", progress))
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None; got {type(callback).__name__}")
    if checkpoint is not None:
        checkpoint = os.fspath(checkpoint)
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim < 1 or Y.ndim < 1 or len(X) != len(Y):
        raise ValueError(
            f"X and Y must be streams (L, ...) of the same length L; got X {X.shape}, Y {Y.shape}"
        )
    Xs, Ys = batchify(X, n_streams), batchify(Y, n_streams)  # (R1) (M, n_streams, ...)
    M = Xs.shape[0]
    model.loss(Xs, Ys)  # validate the whole stream through the model's own checks, before any update
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError("validation must be a tuple (X_val, Y_val) of streams")
        validation = (np.asarray(validation[0]), np.asarray(validation[1]))
        if len(validation[0]) != len(validation[1]):
            raise ValueError(
                f"X_val and Y_val must have the same length; got {len(validation[0])} and "
                f"{len(validation[1])}"
            )
        model.loss(batchify(validation[0], n_streams), batchify(validation[1], n_streams))
    fit_extra = {"chunk_length": chunk_length, "n_streams": n_streams, "truncate": truncate}
    n_chunks = -(-M // chunk_length)

    for e in range(initial_epoch, epochs):
        progress.start(e + 1, epochs, n_chunks)
        lr = optimizer.lr
        state = None  # (R3) s_0 = zeros
        total = 0.0
        for k in range(n_chunks):
            Xc = Xs[k * chunk_length : (k + 1) * chunk_length]  # (R2)
            Yc = Ys[k * chunk_length : (k + 1) * chunk_length]
            E, grads, state = model.loss_and_grad(
                Xc, Yc, h0=state, truncate=truncate, return_state=True
            )  # (R3)
            _step(optimizer, grads, f"epoch {e + 1}, chunk {k + 1}/{n_chunks}")  # (R4)
            total += E
            progress.update(k + 1, total / min((k + 1) * chunk_length, M))
        record = {"epoch": e + 1, "lr": lr, "loss": total / M}  # (R5)
        if validation is not None:
            ev = evaluate_stream(model, *validation, chunk_length=chunk_length, n_streams=n_streams)
            record["val_loss"], record["val_accuracy"] = ev["loss"], ev["accuracy"]
        _finish_epoch(
            record,
            model,
            optimizer,
            scheduler,
            history,
            checkpoint,
            ("fit_stream", fit_extra),
            progress,
            callback,
        )
    return history
