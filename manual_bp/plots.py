"""Every figure the command line draws, in one place: matplotlib is an optional extra (``manual-bp[plot]``).

- ``plot_training(result, path)``: the curves of a ``manual-bp train`` run (``run_mlp``, ``run_lm``,
  ``run_adding``): training loss and the held-out measure each run records, per epoch or per step.
- ``plot_vanishing(result, path)``: ``||dE_T/ds_k||`` against T - k for RNN, LSTM and GRU
  (``run_vanishing``).
- ``plot_depth(result, path)``: ``||dE/db^(l)||`` of each layer of an MLP against depth at initialisation,
  and against epoch while it trains (``run_depth``; Nielsen 2015, chapter 5).

Each takes the dict the task returns (what ``--json`` prints) and returns the path written, as a str. The
file type comes from the suffix (``PLOT_FORMATS``); any other suffix is a ValueError before any work.
matplotlib is imported inside the call, drawing on a ``Figure`` with the Agg canvas: pyplot's global state
and GUI backends are never touched. Without matplotlib the call raises ``MissingDependency`` naming
``pip install "manual-bp[plot]"``. The figure is written to a temporary file in the target's directory and
renamed over the target only when complete: a failed call leaves no file behind and an existing file as it
was.
"""

from __future__ import annotations

import math
import os
import uuid

import numpy as np

from .datasets import MissingDependency

#: file types the plots can be written as (matplotlib's own, without extra packages)
PLOT_FORMATS = (".png", ".pdf", ".svg")
INSTALL_HINT = 'pip install "manual-bp[plot]"'
DPI = 110
NORM = r"$\|\partial E / \partial b^{(l)}\|$"  # the bias gradient of layer l: its speed of learning


def check_format(path, flag="--plot") -> str:
    """``path`` as a str if its suffix is one of ``PLOT_FORMATS``; else ValueError naming ``flag``."""
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() not in PLOT_FORMATS:
        raise ValueError(f"{flag} {path}: the file name must end in {', '.join(PLOT_FORMATS)}")
    return path


def require_matplotlib():
    """``(Figure, FigureCanvasAgg)``; MissingDependency with the install command when matplotlib is absent."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependency(f"plots need matplotlib, which is not installed: {INSTALL_HINT}") from None
    return Figure, FigureCanvasAgg


def available() -> bool:
    """Whether matplotlib can be imported (imports it)."""
    try:
        require_matplotlib()
    except MissingDependency:
        return False
    return True


def _figure(width, height, ncols=1):
    Figure, FigureCanvasAgg = require_matplotlib()
    fig = Figure(figsize=(width, height), layout="tight")  # laid out when saved
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas: no pyplot, no GUI
    axes = fig.subplots(1, ncols)
    return fig, (list(axes) if ncols > 1 else [axes])


def _save(fig, path) -> str:
    """Write ``fig`` to ``path`` through a temporary file in the same directory (no partial file)."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    head, tail = os.path.split(path)
    while True:  # a new hidden file beside the target, made with the umask's mode like any other file
        tmp = os.path.join(head, f".{tail}.{uuid.uuid4().hex[:12]}{ext}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format=ext[1:], dpi=DPI)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _positive(values):
    """Floats with the non-positive (underflowed) ones as NaN: gaps on a log axis, not errors."""
    a = np.asarray(values, dtype=float)
    return np.where(a > 0, a, np.nan)


def _spans_decades(*series) -> bool:
    a = np.concatenate([_positive(s).ravel() for s in series])
    a = a[np.isfinite(a)]
    return a.size > 1 and a.max() / a.min() > 30


def _check_result(result, tasks, what):
    if not isinstance(result, dict) or result.get("task") not in tasks:
        got = result.get("task") if isinstance(result, dict) else type(result).__name__
        raise ValueError(f"{what} needs the result of {' or '.join(tasks)}; got {got!r}")


# ---------------------------------------------------------------------------------------------- training
def plot_training(result, path) -> str:
    """The training curves of a ``manual-bp train`` result (task ``mlp``, ``lm`` or ``adding``).

    mlp: training loss (the mean over each epoch's batches) and test accuracy per epoch, one colour per
    set-up. lm: training and held-out bits per character per epoch, epoch 0 the untrained model. adding:
    test MSE (solid) and the mean training-batch MSE since the previous point (dashed) against the step,
    one colour per model, with the 0.167 of predicting the mean.
    """
    path = check_format(path)
    _check_result(result, ("mlp", "lm", "adding"), "plot_training")
    draw = {"mlp": _draw_mlp, "lm": _draw_lm, "adding": _draw_adding}[result["task"]]
    return draw(result, path)


def _draw_mlp(result, path):
    fig, (ax_loss, ax_acc) = _figure(11, 4.2, 2)
    losses = []
    for i, r in enumerate(result["results"]):
        h = r["history"]
        epochs = [e["epoch"] for e in h]
        color = f"C{i}"
        label = f"{r['setup']} {r['sizes']}"
        losses.append([e["loss"] for e in h])
        marker = "o" if len(epochs) <= 30 else None
        ax_loss.plot(epochs, losses[-1], "-", marker=marker, ms=3, color=color, lw=1.6, label=label)
        ax_acc.plot(epochs, [e["test_accuracy"] for e in h], "-", marker=marker, ms=3, color=color, lw=1.6,
                    label=f"{label}: {r['test_accuracy']:.3f} at the end")
    if _spans_decades(*losses):
        ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (mean over the epoch's batches)")
    ax_loss.set_title("Training loss (each set-up's own loss)")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("test accuracy (fraction correct)")
    ax_acc.set_title(f"Held-out accuracy: {result['n_test']} test samples")
    ax_acc.set_ylim(0, 1.02)
    for ax in (ax_loss, ax_acc):
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"manual-bp train mlp: {result['data']}, {result['n_train']} training samples, "
                 f"seed {result['seed']}")
    return _save(fig, path)


def _draw_lm(result, path):
    fig, (ax,) = _figure(7, 4.2)
    epochs = [0] + [e["epoch"] for e in result["epochs"]]
    train = [e["train_bpc"] for e in result["epochs"]]
    held = [result["untrained_bpc"]] + [e["val_bpc"] for e in result["epochs"]]
    ax.plot(epochs[1:], train, "o-", color="C0", lw=1.6, label="training (mean over the epoch's chunks)")
    ax.plot(epochs, held, "s-", color="C1", lw=1.6, label="held-out (epoch 0: untrained)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits per character")
    ax.set_xticks(epochs)
    ax.set_title(f"Character-level {result['model'].upper()} H={result['hidden']}: "
                 f"{result['n_train']} training characters, vocabulary {result['vocabulary']}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _draw_adding(result, path):
    fig, (ax,) = _figure(7.5, 4.4)
    series = []
    for i, r in enumerate(result["results"]):
        steps = [p["step"] for p in r["curve"]]
        test = [p["test_mse"] for p in r["curve"]]
        train = [p["train_mse"] for p in r["curve"]]
        series += [test, train]
        name = r["model"].upper()
        ax.plot(steps, _positive(test), "o-", color=f"C{i}", lw=1.6, label=f"{name} test")
        ax.plot(steps, _positive(train), "--", color=f"C{i}", lw=1.2, alpha=0.8, label=f"{name} training")
    ax.axhline(result["baseline_mse"], color="gray", ls=":", lw=1.4,
               label=f"predicting the mean ({result['baseline_mse']:.3f})")
    if _spans_decades(*series, [result["baseline_mse"]]):
        ax.set_yscale("log")
    how = "Hessian-free steps" if result.get("optimizer") == "hf" else "Adam steps"
    ax.set_xlabel(f"step ({how}, batches of {result['batch_size']})")
    ax.set_ylabel("mean squared error of the sum")
    ax.set_title(f"The adding problem: T = {result['T']}, H = {result['hidden']}, "
                 f"test MSE on {result['test_size']} sequences")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------- vanishing
def plot_vanishing(result, path) -> str:
    """``||dE_T/ds_k||`` against T - k (log scale), one colour per model, the state h solid, c dashed."""
    path = check_format(path)
    _check_result(result, ("vanishing",), "plot_vanishing")
    T = result["T"]
    fig, (ax,) = _figure(7, 4.2)
    lag = np.arange(T, -1, -1)  # T - k for k = 0..T
    for i, (name, parts) in enumerate(result["curves"].items()):
        for part, values in parts.items():  # one colour per model; the cell state c dashed
            model = name.upper().replace("+FB", ", forget bias +")
            label = f"{model}  " + rf"$\|\partial E_T/\partial {part}_k\|$"
            ax.semilogy(lag, _positive(values), label=label, lw=1.6, color=f"C{i}",
                        ls="-" if part == "h" else "--")
    ax.set_xlabel("T - k  (steps back from the last one)")
    ax.set_ylabel("gradient norm (log scale)")
    ax.set_title(f"The vanishing gradient: one random sequence, T = {T}, H = {result['hidden']}, "
                 "default initialisation", fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------- depth
def plot_depth(result, path) -> str:
    """Left: ``||dE/db^(l)||`` against the layer l at initialisation (and after the last epoch), log scale.
    Right, when it trained: each layer's ``||dE/db^(l)||`` against the epoch, log scale (0: initialisation).
    A layer whose norm is 0 (underflow, dead units) leaves a gap on the log axis."""
    path = check_format(path)
    _check_result(result, ("depth",), "plot_depth")
    history = result["history"]
    trained = len(history) > 1
    fig, axes = _figure(12, 4.6, 2) if trained else _figure(6.5, 4.6)
    ax_depth = axes[0]
    layers = [r["layer"] for r in result["layers"]]
    L = len(layers)
    ax_depth.semilogy(layers, _positive([r["grad_norm"] for r in result["layers"]]), "o-", color="C0",
                      lw=1.8, label="at initialisation")
    if trained:
        last = history[-1]
        ax_depth.semilogy(layers, _positive(last["grad_norms"]), "s--", color="C3", lw=1.4,
                          label=f"after epoch {last['epoch']}")
    ax_depth.set_xticks(layers)
    ax_depth.set_xticklabels([f"{l}\n({'output' if l == L else 'hidden'})" for l in layers])
    ax_depth.set_xlabel("layer l  (1: next to the input)")
    ax_depth.set_ylabel(NORM + "  (log scale)")
    ax_depth.set_title("Speed of learning against depth")
    ax_depth.grid(True, which="both", alpha=0.3)
    ax_depth.legend(fontsize="small")
    how = f", SGD lr {result['lr']:g} in batches of {result['batch_size']}" if trained else ""
    acc = result.get("test_accuracy")
    tail = "" if acc is None or (isinstance(acc, float) and math.isnan(acc)) else f"; test accuracy {acc:.3f}"
    fig.suptitle(f"{result['sizes']}, {result['activation']} hidden layers, sigmoid output, squared error\n"
                 f"{result['n_train']} training digits{how}{tail}", fontsize="medium")
    if not trained:
        return _save(fig, path)
    ax_time = axes[1]
    epochs = [h["epoch"] for h in history]
    colors = [f"C{i % 10}" for i in range(L)]
    for i, l in enumerate(layers):
        ax_time.semilogy(epochs, _positive([h["grad_norms"][i] for h in history]), "-", color=colors[i],
                         lw=1.6, marker="o" if len(epochs) <= 30 else None, ms=3,
                         label=f"layer {l}" + (" (output)" if l == L else ""))
    ax_time.set_xlabel("epoch  (0: initialisation)")
    ax_time.xaxis.get_major_locator().set_params(integer=True)
    ax_time.set_ylabel(NORM + "  (log scale)")
    ax_time.set_title("Speed of learning of each layer during training")
    ax_time.set_xlim(0, max(epochs))
    ax_time.grid(True, which="both", alpha=0.3)
    ax_time.legend(fontsize="small")
    return _save(fig, path)
