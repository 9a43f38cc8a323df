"""Every figure the command line draws, in one place: matplotlib is an optional extra (``manual-bp[plot]``).

- ``plot_training(result, path)``: the curves of a ``manual-bp train`` run (``run_mlp``, ``run_lm``,
  ``run_adding``): training loss and the held-out measure each run records, per epoch or per step.
- ``plot_vanishing(result, path)``: ``||dE_T/ds_k||`` against T - k for RNN, LSTM and GRU
  (``run_vanishing``).
- ``plot_depth(result, path)``: ``||dE/db^(l)||`` of each layer of an MLP against depth at initialisation,
  and against epoch while it trains (``run_depth``; Nielsen 2015, chapter 5).
- ``plot_long_bptt(result, path)``: peak memory and time against T of full, checkpointed (sqrt, revolve)
  BPTT, RTRL and torch (``python -m benchmarks.long_bptt``, whose ``--json`` file holds the result).

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


def _figure(width, height, ncols=1, nrows=1):
    """A Figure on the Agg canvas and its axes as a flat list, row by row."""
    Figure, FigureCanvasAgg = require_matplotlib()
    fig = Figure(figsize=(width, height), layout="tight")  # laid out when saved
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas: no pyplot, no GUI
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, list(axes.ravel())


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


# ---------------------------------------------------------------------------------------------- long BPTT
#: what each row of a long-BPTT result must hold: all rows; a measured one; the revolve sweep
LONG_BPTT_KEYS = ("cell", "H", "T", "method")
LONG_BPTT_MEASURED = ("us_per_step", "rss_peak", "load")
LONG_BPTT_SETUP = ("D", "H", "K", "N")
LONG_BPTT_STYLES = {"full": ("C0", "o", "-"), "sqrt": ("C1", "s", "-"), "revolve s=10": ("C2", "^", "-"),
                    "revolve s=100": ("C4", "v", "-"), "torch full": ("C3", "o", "--"),
                    "torch ckpt": ("C5", "s", "--")}
MEMORY = "peak memory of the call (MB, log scale)\nfilled: tracemalloc; hollow: RSS growth"


def check_long_bptt(result):
    """ValueError/TypeError naming what is wrong unless ``result`` has the shape that
    ``python -m benchmarks.long_bptt --json`` writes: ``task`` "long_bptt", ``setup`` with D, H, K, N,
    ``cpu_count``, and ``results``, a list of rows, each with cell, H, T, method and either ``error``, or
    ``points`` (the revolve sweep), or us_per_step, rss_peak and load."""
    _check_result(result, ("long_bptt",), "plot_long_bptt")
    setup = result.get("setup")
    if not isinstance(setup, dict) or any(not isinstance(setup.get(k), int) for k in LONG_BPTT_SETUP):
        raise ValueError(f"plot_long_bptt: 'setup' must give the integers {', '.join(LONG_BPTT_SETUP)}; "
                         f"got {setup!r}")
    rows = result.get("results")
    if not isinstance(rows, list) or not rows:
        got = "an empty list" if isinstance(rows, list) else type(rows).__name__
        raise ValueError(f"plot_long_bptt: 'results' must be a non-empty list of measurements; got {got}")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise TypeError(f"plot_long_bptt: results[{i}] must be a dict; got {type(r).__name__}")
        need = LONG_BPTT_KEYS + (() if "error" in r or "points" in r else LONG_BPTT_MEASURED)
        missing = [k for k in need if k not in r]
        if missing:
            raise ValueError(f"plot_long_bptt: results[{i}] ({r.get('method', '?')}) lacks {missing}")
        if "points" in r and not all(isinstance(p, dict) and {"s", "forward_steps", "seconds"} <= p.keys()
                                     for p in r["points"]):
            raise ValueError(f"plot_long_bptt: results[{i}]['points'] must be dicts with s, forward_steps "
                             "and seconds")


def _long_bptt_peak(r):
    """MB: ours tracemalloc's peak where measured, else (and torch's) the growth of the resident set."""
    b = r.get("traced_peak") or r.get("rss_peak")
    return np.nan if b is None else b / 2**20


def _memory_against_T(ax, rows, styles):
    """Memory against T, one line per method: filled markers tracemalloc's peak, hollow the RSS growth."""
    for method, (color, marker, line) in styles.items():
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["T"])
        if not mine:
            continue
        Ts, mb = np.array([r["T"] for r in mine]), _positive([_long_bptt_peak(r) for r in mine])
        ax.plot(Ts, mb, marker + line, color=color, lw=1.5, label=method)
        rss = np.array([not r.get("traced_peak") for r in mine])
        if rss.any():  # drawn over the filled markers
            ax.plot(Ts[rss], mb[rss], marker, color=color, mfc="white")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T (steps, log scale)")
    ax.set_ylabel(MEMORY)


def plot_long_bptt(result, path) -> str:
    """The figure of ``python -m benchmarks.long_bptt`` from its ``--json`` result (``check_long_bptt``).

    Top: the RNN's peak memory and time per step against T for each method, and revolve's time against
    its count t(T, s) of advanced steps at one T with the least-squares line. Bottom: the LSTM's memory
    against T, RTRL's memory against full BPTT's at H = 8, and RTRL's time per step against H with a
    slope-4 guide. Rows that failed (``error``) are left out; a missing group leaves its panel empty.
    """
    path = check_format(path)
    check_long_bptt(result)
    D, H, K, N = (result["setup"][k] for k in LONG_BPTT_SETUP)
    ok = [r for r in result["results"] if "error" not in r]
    main = [r for r in ok if "group" not in r]
    rnn = [r for r in main if r["cell"] == "RNN"]
    fig, axes = _figure(18, 10, ncols=3, nrows=2)
    ax_mem, ax_time, ax_sweep, ax_lstm, ax_rt_mem, ax_rt_h = axes
    shape = f"N={N} D={D} K={K}, float64"

    _memory_against_T(ax_mem, rnn, LONG_BPTT_STYLES)
    ax_mem.set_title(f"Peak memory of one gradient: RNN H={H} {shape}")

    for method, (color, marker, line) in LONG_BPTT_STYLES.items():
        rows = sorted((r for r in rnn if r["method"] == method), key=lambda r: r["T"])
        if rows:
            ax_time.plot([r["T"] for r in rows], _positive([r["us_per_step"] for r in rows]), marker + line,
                         color=color, lw=1.5, label=method)
    ax_time.set_xscale("log")
    ax_time.set_yscale("log")
    ax_time.set_xlabel("sequence length T (steps, log scale)")
    ax_time.set_ylabel("time per step of one gradient (us, log scale)")
    ax_time.set_title(f"Time per step: RNN H={H} {shape}, 1 thread")

    sweep = next((r for r in ok if r.get("group") == "revolve-sweep" and len(r["points"]) >= 2), None)
    if sweep:
        pts = sorted(sweep["points"], key=lambda p: p["forward_steps"])
        xs, ys = [p["forward_steps"] for p in pts], [p["seconds"] for p in pts]
        b, a = np.polyfit(xs, ys, 1)  # seconds = a + b t(T, s)
        ax_sweep.plot(xs, ys, "o", color="C2", label="revolve, measured (best of 3)")
        ax_sweep.plot(xs, [a + b * x for x in xs], "-", color="gray",
                      label=f"least squares: {a:.2f} s + {b * 1e6:.1f} us x t(T, s)")
        for p in pts:
            ax_sweep.annotate(f"s={p['s']}", (p["forward_steps"], p["seconds"]), fontsize=8,
                              textcoords="offset points", xytext=(4, -10))
        ax_sweep.set_title(f"Revolve's time against its count: RNN H={H} T={sweep['T']:,}")
    ax_sweep.set_xlabel("advanced (recomputed) steps t(T, s), (RV3)")
    ax_sweep.set_ylabel("seconds per gradient")

    _memory_against_T(ax_lstm, [r for r in main if r["cell"] == "LSTM"], LONG_BPTT_STYLES)
    ax_lstm.set_title(f"Peak memory of one gradient: LSTM H={H} {shape}")

    rt_t = [r for r in ok if r.get("group") == "rtrl-T"]
    _memory_against_T(ax_rt_mem, rt_t, {"rtrl": ("C0", "d", "-"), "full": ("C1", "o", "-")})
    h_rt = sorted({r["H"] for r in rt_t})
    ax_rt_mem.set_title(f"RTRL against full BPTT: RNN H={','.join(map(str, h_rt)) or '-'} {shape}")

    rt_h = sorted((r for r in ok if r.get("group") == "rtrl-H"), key=lambda r: r["H"])
    if len(rt_h) >= 2:
        Hs, us = [r["H"] for r in rt_h], [r["us_per_step"] for r in rt_h]
        top = slice(-3, None)
        slope = np.polyfit(np.log(Hs[top]), np.log(us[top]), 1)[0]
        ax_rt_h.plot(Hs, _positive(us), "d-", color="k", lw=1.5,
                     label=f"RTRL (fitted exponent over the {len(Hs[top])} largest H: {slope:.2f})")
        ax_rt_h.plot(Hs, [us[-1] * (h / Hs[-1]) ** 4 for h in Hs], ":", color="gray", label="slope 4: H^4")
    ax_rt_h.set_xscale("log")
    ax_rt_h.set_yscale("log")
    if len(rt_h) >= 2:
        ax_rt_h.set_xticks(Hs, [str(h) for h in Hs])
        ax_rt_h.set_xticks([], minor=True)
    ax_rt_h.set_xlabel("hidden size H (log scale)")
    ax_rt_h.set_ylabel("time per step (us, log scale)")
    ax_rt_h.set_title(f"RTRL's time per step against H: RNN D={D} N={N}")

    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    loads = [r["load"] for r in result["results"] if isinstance(r.get("load"), (int, float))]
    load = f"load average {min(loads):.1f}-{max(loads):.1f}" if loads else "load not recorded"
    fig.suptitle("Long sequences: full BPTT, checkpointed BPTT (sqrt, revolve), RTRL and torch, one gradient "
                 f"each in a fresh process; {load} on {result.get('cpu_count', '?')} cores", fontsize=11)
    return _save(fig, path)
