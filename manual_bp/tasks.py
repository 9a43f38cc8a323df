"""The tasks behind ``manual-bp train`` and ``manual-bp vanishing``: real data, nothing downloaded.

Each task runs in two steps, so that nothing trains and nothing is written until every input is known good:

- ``plan_<task>(...)`` checks every input in one pass (files and their contents, output paths, the memory
  the run needs against what this machine has available) and loads the data. It trains nothing and writes
  nothing. Everything wrong is reported together in one ``ValueError`` whose message names the flag, the
  file, the array and index, what was expected and what came. What is dubious but usable (test labels never
  seen in training, unscaled features) is listed in ``plan.warnings``; ``plan.header`` describes the run.
- ``run_<task>(plan, progress=False)`` does the work and returns a plain dict (what ``--json`` prints).

``train_mlp``, ``train_lm``, ``train_adding`` and ``vanishing`` do both (warnings through
``warnings.warn``). Messages name the command-line flags (``--data``, ``--T``, ...), which are the keyword
arguments' names. ``resolve`` applies ``--quick``'s presets to the settings not given.

Nothing here prints. ``progress=True`` draws tqdm bars (rate, ETA, running loss) on stderr when stderr is a
terminal, and nothing otherwise. A run whose loss or gradient becomes non-finite stops with
:class:`TrainingDiverged`.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import checkpoint, datasets, plots
from ._validation import check_int
from .hessian_free import HessianFree
from .mlp import MLP
from .models import RECURRENT_MODELS, model_class
from .optim import SGD, Adam, ExponentialLR
from .recurrent import vanishing_gradients
from .training import EVAL_BATCH, evaluate, evaluate_stream, fit, fit_stream

LN2 = float(np.log(2.0))

#: the settings ``--quick`` changes, per task: (default, default with --quick); an explicit value always wins
PRESETS = {
    "mlp": {"epochs": (60, 5), "train_size": (None, 300)},
    "lm": {
        "epochs": (5, 2),
        "hidden": (128, 32),
        "seq_len": (50, 50),
        "max_chars": (200_000, 20_000),
        "sample_length": (300, 60),
    },
    "adding": {"T": (100, 20), "steps": (2000, 60), "hidden": (64, 16), "test_size": (2000, 200)},
    "vanishing": {"T": (100, 100), "hidden": (32, 32)},
}


def resolve(task: str, quick: bool = False, **given) -> dict:
    """``task``'s preset settings: each given value that is not None, else the default (``--quick``'s)."""
    if task not in PRESETS:
        raise ValueError(f"task must be one of {sorted(PRESETS)}; got {task!r}")
    unknown = sorted(set(given) - set(PRESETS[task]))
    if unknown:
        raise TypeError(f"{task} has no preset setting {unknown}; its settings are {sorted(PRESETS[task])}")
    return {
        key: given[key] if given.get(key) is not None else pair[bool(quick)]
        for key, pair in PRESETS[task].items()
    }


class TrainingDiverged(RuntimeError):
    """Training stopped because the loss or a gradient became non-finite (NaN or inf)."""


@dataclass
class Plan:
    """A validated run: its settings (what will actually run), description, warnings and loaded data."""

    task: str
    settings: dict
    header: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    data: dict = field(default_factory=dict, repr=False)
    memory: int = 0  # the estimated peak bytes of the run


def format_number(x) -> str:
    """A loss or error for a table: 4 decimals in the usual range, 3 significant digits outside it."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    return f"{x:.4f}" if x == 0 or 1e-3 <= abs(x) < 1e4 else f"{x:.3g}"


def _plural(n, noun) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _check_progress(progress) -> bool:
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True or False; got {type(progress).__name__} {progress!r}")
    return bool(progress)


def _stderr_is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed or detached stream
        return False


class Bar:
    """``fit``'s progress protocol (``start``, ``update``, ``end``) drawn by tqdm on stderr.

    Shows rate, ETA and the running loss (times ``scale``, e.g. nats to bits); after each epoch, one line of
    ``summary(record)`` on stderr. Draws nothing when ``enabled`` is False or stderr is not a terminal; either
    way ``started`` tells whether training began, so that a failure inside ``fit`` can be told from a refused
    input.
    """

    def __init__(self, label, unit, enabled=True, summary=None, loss_label="loss", scale=1.0):
        self.label, self.unit = label, unit
        self.enabled = bool(enabled) and _stderr_is_terminal()
        self.summary, self.loss_label, self.scale = summary, loss_label, scale
        self.note = ""  # appended to the running loss, e.g. the last test error
        self.started = False
        self._bar = None

    def start(self, epoch, epochs, total):
        self.started = True
        if not self.enabled:
            return
        from tqdm import tqdm  # a core dependency, imported only when a bar is drawn

        self._desc = self.label if epochs == 1 else f"{self.label} epoch {epoch}/{epochs}"
        self._bar = tqdm(
            total=total, desc=self._desc, unit=self.unit, leave=False, file=sys.stderr, dynamic_ncols=True
        )

    def update(self, done, loss=None):
        if self._bar is None:
            return
        parts = [] if loss is None else [f"{self.loss_label} {format_number(loss * self.scale)}"]
        self._bar.set_postfix_str(", ".join(parts + ([self.note] if self.note else [])), refresh=False)
        self._bar.update(done - self._bar.n)

    def end(self, record):
        if self._bar is None:
            return
        elapsed = self._bar.format_dict["elapsed"]
        self._bar.close()
        self._bar = None
        if self.summary is not None:
            sys.stderr.write(f"{self._desc}: {self.summary(record)} ({elapsed:.1f} s)\n")
            sys.stderr.flush()


def _train(bar, where, train, *args, **kwargs):
    """``train(*args, **kwargs)`` (fit or fit_stream); a ValueError once training began means divergence."""
    try:
        return train(*args, **kwargs)
    except ValueError as exc:
        if bar.started:
            raise TrainingDiverged(f"{where}: {exc}") from exc
        raise


# ---------------------------------------------------------------------------------------------- checks
class _Problems(list):
    """Everything wrong with a run's inputs, collected in one pass and raised together."""

    def attempt(self, prefix, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, or None with its ValueError/OSError message recorded after ``prefix``."""
        try:
            return fn(*args, **kwargs)
        except (ValueError, OSError, datasets.MissingDependency) as exc:
            self.append(f"{prefix}{exc}")
            return None

    def raise_if_any(self):
        if self:
            raise ValueError("; ".join(self))


def check_output_path(flag: str, path, keep=()) -> str:
    """``path`` as a str if a file can be written there: its directory exists and is writable, it is no
    directory, and it is none of ``keep`` (the run's input files). ValueError naming ``flag`` and ``path``."""
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{flag}: an empty file name")
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path}: is a directory; give a file name")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise ValueError(f"{flag} {path}: exists and is not a regular file")
    parent = os.path.dirname(path) or "."
    if not os.path.exists(parent):
        raise ValueError(f"{flag} {path}: directory {parent} does not exist")
    if not os.path.isdir(parent):
        raise ValueError(f"{flag} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: directory {parent} is not writable")
    for other_flag, other in keep:
        if other is not None and os.path.exists(path) and os.path.exists(other):
            if os.path.samefile(path, other):
                raise ValueError(f"{flag} {path}: is the {other_flag} file; writing there would destroy it")
    return path


def _check_checkpoint_target(flag, path, keep=()) -> str:
    """An output path for ``checkpoint.save``: writable, and not an existing file other than a checkpoint."""
    path = check_output_path(flag, path, keep)
    if os.path.exists(path) and os.path.getsize(path) > 0:
        try:
            members = datasets.npz_members(path)
        except (ValueError, OSError):
            members = {}
        if "meta" not in members:
            raise ValueError(
                f"{flag} {path}: exists and is not a manual-bp checkpoint; not overwriting it "
                "(remove it or choose another name)"
            )
    return path


PLOT_FORMATS = plots.PLOT_FORMATS  # file types --plot can write (matplotlib's own, without extra packages)


def _check_plot_path(path, keep=()) -> str:
    path = check_output_path("--plot", path, keep)
    plots.check_format(path)
    for other_flag, other in keep:
        if other is not None and os.path.abspath(os.fspath(other)) == os.path.abspath(path):
            raise ValueError(f"--plot {path}: is also the {other_flag} file; give them different names")
    return path


def _plan_plot(problems, plot, keep=()):
    """``plot`` checked (a writable path of a known type that is none of ``keep``, matplotlib importable),
    or None with the problem recorded in ``problems``; None stays None."""
    if plot is None:
        return None
    plot = problems.attempt("", _check_plot_path, plot, keep)
    if plot is not None and problems.attempt("--plot: ", plots.require_matplotlib) is None:
        return None
    return plot


# ---------------------------------------------------------------------------------------------- memory
def available_memory():
    """Bytes of memory available to a new allocation (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 2**10:.3g} KiB"


def _memory_problem(what, estimate, settings, flags):
    """None when ``estimate(**settings)`` bytes fit in the available memory; else the message, with the
    largest value of each ``(flag, key, smallest)`` in ``flags`` that would fit, the others as given."""
    avail = available_memory()
    need = estimate(**settings)
    if avail is None or need <= avail:
        return None
    ways = []
    for flag, key, smallest in flags:
        lo, hi = smallest, settings[key]
        if hi is None or estimate(**{**settings, key: lo}) > avail:
            continue
        while hi - lo > 1:  # the estimate grows with each setting: bisect for the largest that fits
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if estimate(**{**settings, key: mid}) <= avail else (lo, mid)
        ways.append(f"{flag} {lo} or less")
    way = f"; it would fit with {', or '.join(ways)}" if ways else ""
    return (
        f"{what} needs about {format_bytes(need)} of memory and this machine has {format_bytes(avail)} "
        f"available{way}"
    )


_F64 = 8
#: float64 numbers per time step, sequence and hidden unit that loss_and_grad (grad) and loss/forward (eval)
#: hold at their peak; measured with tracemalloc at H = 16..64 (RNN 4.4/2.4, LSTM 12.6/7.5, GRU 13.2/5.5),
#: rounded up
_PER_HIDDEN = {"RNN": (5, 3), "LSTM": (13, 8), "GRU": (14, 6)}
_GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}


def _recurrent_bytes(name, T, N, H, K, grad):
    per_hidden = _PER_HIDDEN[name][0 if grad else 1]
    return _F64 * T * N * (per_hidden * H + (4 if grad else 5) * K + 4)


def _recurrent_param_bytes(name, D, H, K):
    count = _GATES[name] * H * (D + H + 2) + K * (H + 1)
    return _F64 * 6 * count  # parameters, gradients, two Adam moments, the optimizer's scratch


# ---------------------------------------------------------------------------------------------- models
def make_recurrent(name, input_size, hidden_size, output_size, loss="cross_entropy", seed=0):
    """A recurrent model of the registry (``rnn``, ``lstm``, ``gru``; any case), default initialisation."""
    cls = model_class(name)
    if cls not in RECURRENT_MODELS.values():
        raise ValueError(f"model must be one of {sorted(RECURRENT_MODELS)}; got {name!r}")
    return cls(input_size, hidden_size, output_size, loss=loss, seed=seed)


def _recurrent_name(name) -> str:
    cls = model_class(name)
    if cls not in RECURRENT_MODELS.values():
        raise ValueError(
            f"model must be one of {', '.join(m.lower() for m in RECURRENT_MODELS)}; got {name!r}"
        )
    return cls.__name__


# ---------------------------------------------------------------------------------------------- digits
#: the configurations ``train mlp`` runs, in order: the seed's own set-up, then the best one documented.
#: ``sizes`` are the hidden layers; the input and output sizes come from the data.
MLP_SETUPS = {
    "seed": dict(
        description="{sizes}, sigmoid, squared error, plain SGD (lr 3.0, batch 10): the seed's own set-up",
        hidden_sizes=[30],
        hidden="sigmoid",
        output="sigmoid",
        loss="squared_error",
        optimizer=("sgd", dict(lr=3.0)),
        batch_size=10,
    ),
    "best": dict(
        description="{sizes}, tanh, softmax + cross-entropy, SGD with Nesterov momentum 0.9 "
        "(lr 0.05, batch 32, weight decay 1e-4)",
        hidden_sizes=[128],
        hidden="tanh",
        output="softmax",
        loss="cross_entropy",
        optimizer=("nesterov", dict(lr=0.05, momentum=0.9, weight_decay=1e-4)),
        batch_size=32,
    ),
}


def _optimizer(kind, params, hyper):
    if kind == "sgd":
        return SGD(params, **hyper)
    if kind == "nesterov":
        return SGD(params, nesterov=True, **hyper)
    if kind == "adam":
        return Adam(params, **hyper)
    raise ValueError(f"unknown optimizer {kind!r}")


def _mlp_bytes(n_train, n_test, features, classes, setups):
    """The peak memory of training ``setups`` beyond the loaded data (one-hot targets, parameters and
    optimizer state, the activations of predicting the whole training and test sets)."""
    peak = 0
    for name in setups:
        s = MLP_SETUPS[name]
        sizes = [features] + s["hidden_sizes"] + [classes]
        params = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
        onehot = n_train * classes if s["loss"] == "squared_error" else 0
        activations = 3 * max(n_train, n_test) * sum(sizes[1:])
        peak = max(peak, _F64 * (onehot + 6 * params + activations + 2 * n_train * features))
    return peak


def _check_classes(where, y_train, y_test, warn):
    """The number of outputs K; refuses a single training class or a test set of unseen classes only."""
    seen = np.unique(y_train)
    if len(seen) < 2:
        raise ValueError(
            f"{where}: the training labels hold a single class ({int(seen[0])}): nothing to learn, "
            "and any accuracy would be trivial; a classifier needs at least 2 classes"
        )
    unseen_mask = ~np.isin(y_test, seen)
    if unseen_mask.all():
        raise ValueError(
            f"{where}: none of the test labels ({', '.join(map(str, np.unique(y_test)[:10]))}) occurs in the "
            "training labels: the test accuracy would be 0 whatever the model learns"
        )
    if unseen_mask.any():
        unseen = np.unique(y_test[unseen_mask])
        shown = ", ".join(map(str, unseen[:10])) + (", ..." if len(unseen) > 10 else "")
        warn(
            f"{where}: {int(unseen_mask.sum())} of {len(y_test)} test samples have labels never seen in "
            f"training ({shown}); they count as errors, so the test accuracy is at most "
            f"{1 - unseen_mask.mean():.4f}"
        )
    return int(max(y_train.max(), y_test.max())) + 1


def plan_mlp(data=None, save=None, epochs=60, train_size=None, seed=0, setups=None, plot=None) -> Plan:
    """Check and load everything ``run_mlp`` needs (see the module docstring); trains nothing.

    data : path of a ``.npz`` (``datasets.load_npz``) or None for scikit-learn's 8x8 digits.
    save : where to write the last set-up's checkpoint, or None.
    epochs : per set-up. train_size : use the first this many training samples (None: all).
    setups : names of ``MLP_SETUPS`` to run, in order (None: all).
    plot : where to draw the training curves (``plots.plot_training``; .png, .pdf or .svg), or None.
    """
    epochs = check_int("epochs", epochs, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    if train_size is not None:
        train_size = check_int("train_size", train_size, minimum=1)
    setups = list(MLP_SETUPS) if setups is None else list(setups)
    for name in setups:
        if name not in MLP_SETUPS:
            raise ValueError(f"setups must name set-ups of {sorted(MLP_SETUPS)}; got {name!r}")
    problems, warns = _Problems(), []
    if save is not None:
        save = problems.attempt("", _check_checkpoint_target, "--save", save, keep=(("--data", data),))
    plot = _plan_plot(problems, plot, keep=(("--data", data), ("--save", save)))
    parts, where = None, "--data" if data is None else f"--data {os.fspath(data)}"
    if data is None:
        parts = problems.attempt("", datasets.load_digits, seed=seed)
        source = "scikit-learn 8x8 digits"
    else:
        source = os.fspath(data)
        members = problems.attempt("--data ", datasets.npz_members, data)
        if members is not None:
            need = 2 * sum(members.values())  # the arrays as stored, then as float64
            avail = available_memory()
            if avail is not None and need > avail:
                problems.append(
                    f"{where}: loading it needs about {format_bytes(need)} of memory and this machine has "
                    f"{format_bytes(avail)} available"
                )
            else:
                parts = problems.attempt("--data ", datasets.load_npz, data, seed=seed)
    settings = {"data": source, "save": save, "epochs": epochs, "train_size": train_size, "seed": seed}
    settings["plot"] = plot
    settings["setups"] = setups
    if parts is None:
        problems.raise_if_any()
    X_train, y_train, X_test, y_test = parts
    n_available = len(X_train)
    used = n_available if train_size is None else min(train_size, n_available)
    X_train, y_train = X_train[:used], y_train[:used]
    subset = "" if used == n_available else f" (the first {used} of {n_available}: --train-size)"
    where_used = where if used == n_available else f"{where} --train-size {used}"
    n_classes = problems.attempt("", _check_classes, where_used, y_train, y_test, warns.append)
    if n_classes is not None:
        scale = max(float(np.abs(X_train).max()), float(np.abs(X_test).max()))
        if scale > 1e3:
            warns.append(
                f"{where}: features reach {scale:.3g} in absolute value; the set-ups expect features scaled "
                "to about [0, 1] (the digits are divided by 16) and may learn little or diverge"
            )
        sizes = {name: [X_train.shape[1]] + MLP_SETUPS[name]["hidden_sizes"] + [n_classes] for name in setups}
        problem = _memory_problem(
            f"training {' and '.join(str(s) for s in sizes.values())} on {used} samples",
            _mlp_bytes,
            dict(
                n_train=used, n_test=len(X_test), features=X_train.shape[1], classes=n_classes, setups=setups
            ),
            [("--train-size", "n_train", 1)],
        )
        if problem:
            problems.append(problem)
    problems.raise_if_any()
    settings.update(n_train=used, n_train_available=n_available, n_test=len(X_test), classes=n_classes)
    settings["sizes"] = sizes
    header = [
        f"data: {source}: {used} training samples{subset}, {len(X_test)} test samples, "
        f"{X_train.shape[1]} features, {n_classes} classes"
    ]
    for name in setups:
        s = MLP_SETUPS[name]
        header.append(
            f"set-up {name}: {s['description'].format(sizes=sizes[name])}; {epochs} epochs, seed {seed}"
        )
    return Plan(
        "mlp",
        settings,
        header,
        warns,
        {"X_train": X_train, "y_train": y_train, "X_test": X_test, "y_test": y_test},
        memory=_mlp_bytes(used, len(X_test), X_train.shape[1], n_classes, setups),
    )


def run_mlp(plan: Plan, progress=False) -> dict:
    """Train each set-up of ``plan`` (from ``plan_mlp``) and report its held-out test accuracy."""
    progress = _check_progress(progress)
    s_all, d = plan.settings, plan.data
    X_train, y_train, X_test, y_test = d["X_train"], d["y_train"], d["X_test"], d["y_test"]
    K = s_all["classes"]
    results = []
    for name in s_all["setups"]:
        s, sizes = MLP_SETUPS[name], s_all["sizes"][name]
        net = MLP(sizes, s["hidden"], s["output"], s["loss"], seed=s_all["seed"])
        one_hot = s["loss"] != "cross_entropy"  # squared error wants one-hot targets
        Y_train = np.eye(K)[y_train] if one_hot else y_train
        Y_test = np.eye(K)[y_test] if one_hot else y_test
        kind, hyper = s["optimizer"]
        opt = _optimizer(kind, net.params, hyper)
        bar = Bar(
            f"{name} {sizes}",
            "batch",
            progress,
            summary=lambda r: f"training loss {format_number(r['loss'])}",
        )
        t0 = time.perf_counter()
        history = _train(
            bar,
            f"set-up {name!r} {sizes}",
            fit,
            net,
            opt,
            X_train,
            Y_train,
            epochs=s_all["epochs"],
            batch_size=s["batch_size"],
            seed=s_all["seed"],
            validation=(X_test, Y_test),  # the test loss and accuracy of each epoch: the curves of --plot
            progress=bar,
        )
        seconds = time.perf_counter() - t0
        results.append(
            {
                "setup": name,
                "description": s["description"].format(sizes=sizes),
                "sizes": sizes,
                "epochs": s_all["epochs"],
                "first_loss": history[0]["loss"],
                "final_loss": history[-1]["loss"],
                "train_accuracy": float((net.predict(X_train) == y_train).mean()),
                "test_accuracy": float((net.predict(X_test) == y_test).mean()),
                "seconds": seconds,
                "history": [
                    {
                        "epoch": r["epoch"],
                        "loss": r["loss"],
                        "test_loss": r["val_loss"],
                        "test_accuracy": r["val_accuracy"],
                    }
                    for r in history
                ],
            }
        )
    saved = None
    if s_all["save"] is not None:
        last = results[-1]
        extra = {"task": "mlp", "setup": last["setup"], "test_accuracy": last["test_accuracy"]}
        checkpoint.save(s_all["save"], net, opt, extra=extra)
        saved = s_all["save"]
    result = {
        "task": "mlp",
        "data": s_all["data"],
        "n_train": s_all["n_train"],
        "n_test": s_all["n_test"],
        "features": X_train.shape[1],
        "classes": K,
        "seed": s_all["seed"],
        "results": results,
        "saved": saved,
        "plot": None,
    }
    return _with_plot(result, s_all.get("plot"))


def _with_plot(result, plot):
    """``result`` with the training curves drawn at ``plot`` (None: none) and ``result["plot"]`` set."""
    result["plot"] = None if plot is None else plots.plot_training(result, plot)
    return result


def _warn_all(plan):
    for message in plan.warnings:
        warnings.warn(message, stacklevel=3)
    return plan


def train_mlp(data=None, save=None, epochs=60, train_size=None, seed=0, setups=None, progress=False,
              plot=None) -> dict:
    """``run_mlp(plan_mlp(...))``; the plan's warnings go through ``warnings.warn``."""
    plan = _warn_all(plan_mlp(data, save, epochs, train_size, seed, setups, plot))
    return run_mlp(plan, progress=progress)


# ------------------------------------------------------------------------------------------- language model
N_STREAMS = 16  # pieces of the text trained side by side (fit_stream's n_streams); fewer for a tiny text
LM_LR = 1e-2


def sample_text(model, vocab, prime: str, length: int, rng, temperature=0.8) -> str:
    """Generate ``length`` characters after ``prime``, feeding each sample back in, state carried along."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    ids = vocab.encode(prime)
    P, S = model.forward(ids.reshape(-1, 1))
    state = tuple(s[-1] for s in S) if isinstance(S, tuple) else S[-1]
    p = P[-1, 0]
    out = []
    for _ in range(length):
        logits = np.log(np.maximum(p, 1e-300)) / temperature
        q = np.exp(logits - logits.max())
        q /= q.sum()
        i = int(rng.choice(len(q), p=q))
        out.append(i)
        P, S = model.forward(np.array([[i]]), h0=state)
        state = tuple(s[-1] for s in S) if isinstance(S, tuple) else S[-1]
        p = P[-1, 0]
    return vocab.decode(out)


def _lm_bytes(model, n_chars, vocabulary, hidden, seq_len):
    """Text and ids, parameters and Adam state, one training chunk and one evaluation chunk."""
    n_train = int(n_chars * 0.9)
    n_held = n_chars - n_train
    streams = max(1, min(N_STREAMS, n_held - 1))
    T = max(1, min(seq_len, n_train // streams))
    T_val = max(1, min(seq_len, n_held // streams))
    text = n_chars * (4 + 3 * _F64)  # the str (at most 4 bytes a character), ids, the batched X and Y
    return (
        text
        + _recurrent_param_bytes(model, vocabulary, hidden, vocabulary)
        + max(
            _recurrent_bytes(model, T, streams, hidden, vocabulary, True),
            2 * _recurrent_bytes(model, T_val, streams, hidden, vocabulary, False),
        )
    )


def plan_lm(
    model="lstm",
    text=None,
    save=None,
    epochs=5,
    hidden=128,
    seq_len=50,
    max_chars=200_000,
    sample_length=300,
    seed=0,
    plot=None,
) -> Plan:
    """Check and load everything ``run_lm`` needs (see the module docstring); trains nothing.

    text : path of a UTF-8 text file, or None for the Python documentation topics in ``pydoc_data``.
    The last 10% of the first ``max_chars`` characters are held out.
    plot : where to draw the training curves (``plots.plot_training``; .png, .pdf or .svg), or None.
    """
    epochs = check_int("epochs", epochs, minimum=1)
    hidden = check_int("hidden", hidden, minimum=1)
    seq_len = check_int("seq_len", seq_len, minimum=1)
    max_chars = check_int("max_chars", max_chars, minimum=1)
    sample_length = check_int("sample_length", sample_length, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    model = _recurrent_name(model)
    problems, warns = _Problems(), []
    if save is not None:
        save = problems.attempt("", _check_checkpoint_target, "--save", save, keep=(("--text", text),))
    plot = _plan_plot(problems, plot, keep=(("--text", text), ("--save", save)))
    corpus = None
    if text is None:
        source = "Python documentation (pydoc_data)"
        corpus = problems.attempt("", datasets.python_docs_text)
    else:
        source = os.fspath(text)
        path = problems.attempt("--text ", datasets.check_input_file, text)
        if path is not None:
            n_bytes = min(os.path.getsize(path), 4 * max_chars)
            avail = available_memory()
            if avail is not None and 5 * n_bytes > avail:
                problems.append(
                    f"--text {path}: reading its first {n_bytes} bytes needs about "
                    f"{format_bytes(5 * n_bytes)} of memory and this machine has {format_bytes(avail)} "
                    "available; use a smaller --max-chars"
                )
            else:
                corpus = problems.attempt("--text ", datasets.read_text, path, max_chars)
    vocab = None
    if corpus is not None:
        corpus = corpus[:max_chars]
        limit = f" (--max-chars {max_chars})" if len(corpus) == max_chars else ""
        if len(corpus) < 100:
            problems.append(
                f"--text {source}: the text must hold at least 100 characters; got {len(corpus)}{limit}"
            )
        elif len(set(corpus)) < 2:
            problems.append(
                f"--text {source}: the text holds a single distinct character ({corpus[0]!r}): "
                "nothing to learn"
            )
        else:
            vocab = datasets.CharVocab(corpus)
            problem = _memory_problem(
                f"the {model} language model with --hidden {hidden} over {len(vocab)} characters",
                _lm_bytes,
                dict(model=model, n_chars=len(corpus), vocabulary=len(vocab), hidden=hidden, seq_len=seq_len),
                [("--hidden", "hidden", 1), ("--seq-len", "seq_len", 1)],
            )
            if problem:
                problems.append(problem)
    problems.raise_if_any()
    ids = vocab.encode(corpus)
    split = int(len(ids) * 0.9)
    streams = min(N_STREAMS, len(ids) - split - 1)  # the held-out text is cut into as many streams
    M = split // streams  # steps per stream (R1): a chunk is at most this long
    chunk = min(seq_len, M)
    if chunk < seq_len:
        warns.append(
            f"--seq-len {seq_len} is longer than each of the {streams} training streams ({M} characters); "
            f"the chunks are {chunk} long"
        )
    settings = dict(
        model=model.lower(),
        data=source,
        save=save,
        epochs=epochs,
        hidden=hidden,
        seq_len=seq_len,
        chunk_length=chunk,
        n_streams=streams,
        max_chars=max_chars,
        sample_length=sample_length,
        seed=seed,
        lr=LM_LR,
        n_train=split,
        n_held_out=len(ids) - split,
        vocabulary=len(vocab),
        plot=plot,
    )
    header = [
        f"data: {source}: {split} training and {len(ids) - split} held-out characters, "
        f"vocabulary {len(vocab)}",
        f"model: {model} H={hidden}, chunks of {chunk} x {streams} streams, Adam lr {LM_LR} (x0.7 each "
        f"epoch), clip 5, {_plural(epochs, 'epoch')}, seed {seed}; losses in bits per character",
    ]
    return Plan(
        "lm",
        settings,
        header,
        warns,
        {"corpus": corpus, "vocab": vocab, "ids": ids},
        memory=_lm_bytes(model, len(corpus), len(vocab), hidden, seq_len),
    )


def run_lm(plan: Plan, progress=False) -> dict:
    """Train the language model of ``plan`` (from ``plan_lm``): held-out bits per character each epoch, then
    a sample."""
    progress = _check_progress(progress)
    s, vocab, ids = plan.settings, plan.data["vocab"], plan.data["ids"]
    corpus = plan.data["corpus"]
    split = s["n_train"]
    train, held = ids[:split], ids[split:]
    chunk = s["chunk_length"]
    streams = s["n_streams"]
    net = make_recurrent(s["model"], len(vocab), s["hidden"], len(vocab), seed=s["seed"])
    opt = Adam(net.params, lr=s["lr"], clip_norm=5.0)
    schedule = ExponentialLR(opt, gamma=0.7)  # lr 0.01, 0.007, 0.0049, ...: settles after the fast start
    before = evaluate_stream(net, held[:-1], held[1:], chunk, streams)["loss"] / LN2  # as fit_stream will
    bar = Bar(
        f"{s['model'].upper()} H={s['hidden']}",
        "chunk",
        progress,
        summary=lambda r: (
            f"train {format_number(r['loss'] / LN2)}, held-out "
            f"{format_number(r['val_loss'] / LN2)} bits per character"
        ),
        loss_label="bpc",
        scale=1 / LN2,
    )
    t0 = time.perf_counter()
    history = _train(
        bar,
        f"{s['model'].upper()} language model",
        fit_stream,
        net,
        opt,
        train[:-1],
        train[1:],
        epochs=s["epochs"],
        chunk_length=chunk,
        n_streams=streams,
        validation=(held[:-1], held[1:]),
        scheduler=schedule,
        progress=bar,
    )
    seconds = time.perf_counter() - t0
    bad = [r["epoch"] for r in history if not math.isfinite(r["val_loss"])]
    if bad:
        raise TrainingDiverged(
            f"{s['model'].upper()} language model: the held-out loss of epoch {bad[0]} is not finite"
        )
    epochs_out = [
        {"epoch": r["epoch"], "lr": r["lr"], "train_bpc": r["loss"] / LN2, "val_bpc": r["val_loss"] / LN2}
        for r in history
    ]
    prime = "The " if set("The ") <= set(vocab.chars) else corpus[:4]
    sample = prime + sample_text(net, vocab, prime, s["sample_length"], np.random.default_rng(s["seed"]))
    saved = None
    if s["save"] is not None:
        extra = {"task": "lm", "vocabulary": "".join(vocab.chars), "val_bpc": epochs_out[-1]["val_bpc"]}
        checkpoint.save(s["save"], net, opt, schedule, extra=extra)
        saved = s["save"]
    result = {
        "task": "lm",
        "model": s["model"],
        "data": s["data"],
        "n_train": s["n_train"],
        "n_held_out": s["n_held_out"],
        "vocabulary": len(vocab),
        "hidden": s["hidden"],
        "chunk_length": chunk,
        "n_streams": streams,
        "seed": s["seed"],
        "untrained_bpc": before,
        "epochs": epochs_out,
        "seconds": seconds,
        "sample": sample,
        "saved": saved,
        "plot": None,
    }
    return _with_plot(result, s.get("plot"))


def train_lm(
    model="lstm",
    text=None,
    save=None,
    epochs=5,
    hidden=128,
    seq_len=50,
    max_chars=200_000,
    sample_length=300,
    seed=0,
    progress=False,
    plot=None,
) -> dict:
    """``run_lm(plan_lm(...))``; the plan's warnings go through ``warnings.warn``."""
    plan = _warn_all(
        plan_lm(model, text, save, epochs, hidden, seq_len, max_chars, sample_length, seed, plot)
    )
    return run_lm(plan, progress=progress)


# ------------------------------------------------------------------------------------------- adding problem
ADDING_BASELINE = 1 / 6  # MSE of always predicting 1, the mean of the sum of two U(0, 1)
ADDING_BATCH = 50
ADDING_LR = 1e-2


def _adding_bytes(T, hidden, test_size, models):
    """The test set, then per model (one at a time): parameters and Adam state, and the larger of an
    evaluation batch's forward pass and a training batch's forward and backward pass."""
    data = _F64 * 3 * T * test_size + T * test_size  # X (T, N, 2), Y (T, N, 1), mask (T, N)
    per_model = max(
        _recurrent_param_bytes(m, 2, hidden, 1)
        + max(
            _recurrent_bytes(m, T, min(test_size, EVAL_BATCH), hidden, 1, False),
            _recurrent_bytes(m, T, ADDING_BATCH, hidden, 1, True) + _F64 * 4 * T * ADDING_BATCH,
        )
        for m in models
    )
    return data + per_model


#: Hessian-free on the adding problem (Martens & Sutskever 2011): fresh batches of 250, at most 50 CG
#: iterations, initial damping 1, structural damping mu = 0.03 (benchmarks/hessian_free_adding.py's settings)
ADDING_HF = {"batch_size": 250, "max_cg": 50, "damping": 1.0, "structural_damping": 0.03}
ADDING_OPTIMIZERS = ("adam", "hf")


def plan_adding(models=("rnn", "lstm", "gru"), T=100, steps=2000, hidden=64, test_size=2000, seed=0,
                optimizer="adam", plot=None) -> Plan:
    """Check everything ``run_adding`` needs (see the module docstring); trains nothing.

    ``optimizer``: "adam" (``steps`` Adam steps on batches of 50) or "hf" (``steps`` Hessian-free steps with
    structural damping on batches of 250, ``ADDING_HF``). ``plot``: where to draw the curves
    (``plots.plot_training``; .png, .pdf or .svg), or None.
    """
    T = check_int("T", T, minimum=2)
    steps = check_int("steps", steps, minimum=1)
    hidden = check_int("hidden", hidden, minimum=1)
    test_size = check_int("test_size", test_size, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    if optimizer not in ADDING_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(ADDING_OPTIMIZERS)}; got {optimizer!r}")
    if isinstance(models, str):
        models = (models,)
    names = [_recurrent_name(m) for m in models]
    if not names:
        raise ValueError("models must name at least one of rnn, lstm, gru")
    problems = _Problems()
    plot = _plan_plot(problems, plot)
    problem = _memory_problem(
        f"the adding problem with --T {T}, --hidden {hidden} and --test-size {test_size}",
        _adding_bytes,
        dict(T=T, hidden=hidden, test_size=test_size, models=names),
        [("--T", "T", 2), ("--hidden", "hidden", 1), ("--test-size", "test_size", 1)],
    )
    if problem:
        problems.append(problem)
    problems.raise_if_any()
    settings = dict(
        models=[m.lower() for m in names],
        T=T,
        steps=steps,
        hidden=hidden,
        test_size=test_size,
        batch_size=ADDING_BATCH if optimizer == "adam" else ADDING_HF["batch_size"],
        lr=ADDING_LR if optimizer == "adam" else None,
        optimizer=optimizer,
        seed=seed,
        plot=plot,
    )
    if optimizer == "adam":
        how = f"{steps} Adam steps (lr {ADDING_LR}, clip 1) on fresh batches of {ADDING_BATCH}"
    else:
        how = (f"{steps} Hessian-free steps (at most {ADDING_HF['max_cg']} CG iterations, damping "
               f"{ADDING_HF['damping']:g}, structural damping {ADDING_HF['structural_damping']:g}) on fresh "
               f"batches of {ADDING_HF['batch_size']}")
    header = [
        f"the adding problem: T={T}, H={hidden}, {how} for {', '.join(names)}, test MSE on {test_size} fresh "
        f"sequences, seed {seed}; predicting the mean scores {ADDING_BASELINE:.3f}"
    ]
    return Plan("adding", settings, header, memory=_adding_bytes(T, hidden, test_size, names))


def run_adding(plan: Plan, progress=False) -> dict:
    """The adding problem at length T: each model trained for the same budget of Adam steps on fresh
    batches; test MSE (``--test-size`` fresh sequences) against the 0.167 of predicting the mean."""
    progress = _check_progress(progress)
    s = plan.settings
    T, hidden, steps, seed = s["T"], s["hidden"], s["steps"], s["seed"]
    rng_test = np.random.default_rng([seed, 1])
    X_test, Y_test, m_test = datasets.adding_problem(T, s["test_size"], rng_test)
    results = []
    for name in s["models"]:
        net = make_recurrent(name, 2, hidden, 1, loss="squared_error", seed=seed)
        if (
            name == "lstm"
        ):  # forget-gate bias 1: remember by default (Gers et al. 2000; Jozefowicz et al. 2015)
            net.params["b"][hidden : 2 * hidden] = 1.0
        hf = s.get("optimizer") == "hf"
        if hf:
            opt = HessianFree(net, damping=ADDING_HF["damping"], max_cg=ADDING_HF["max_cg"],
                              structural_damping=ADDING_HF["structural_damping"])
        else:
            opt = Adam(net.params, lr=s["lr"], clip_norm=1.0)
        rng = np.random.default_rng([seed, 2])
        bar = Bar(
            f"{name.upper()} T={T}",
            "step",
            progress,
            summary=lambda r: f"test MSE {format_number(r['test_mse'])}",
            loss_label="batch MSE",
            scale=2.0,  # E = 1/2 (y - o)^2 per sequence
        )
        bar.start(1, 1, steps)
        t0 = time.perf_counter()
        curve = []
        since = []  # the training-batch MSEs since the last point of the curve
        for step in range(1, steps + 1):
            X, Y, m = datasets.adding_problem(T, s["batch_size"], rng)
            try:
                if hf:
                    E = opt.step(X, Y, mask=m)["loss_before"]  # it refuses a non-finite loss itself
                else:
                    E, g = net.loss_and_grad(X, Y, mask=m)
                    if not math.isfinite(E):
                        raise TrainingDiverged(f"{name.upper()} step {step}: the loss is {E}")
                    opt.step(g)
            except ValueError as exc:
                raise TrainingDiverged(f"{name.upper()} step {step}: {exc}") from exc
            bar.update(step, E)
            since.append(2 * E)  # E = 1/2 (y - o)^2 per sequence
            if step % max(1, steps // 10) == 0 or step == steps:
                mse = 2 * evaluate(net, X_test, Y_test, mask=m_test)["loss"]  # E = 1/2 (y - o)^2 per sequence
                if not math.isfinite(mse):
                    raise TrainingDiverged(f"{name.upper()} step {step}: the test MSE is {mse}")
                curve.append({"step": step, "test_mse": mse, "train_mse": float(np.mean(since))})
                since = []
                bar.note = f"test MSE {format_number(mse)}"
        seconds = time.perf_counter() - t0
        bar.end({"test_mse": curve[-1]["test_mse"]})
        results.append({"model": name, "test_mse": curve[-1]["test_mse"], "curve": curve, "seconds": seconds})
    result = {
        "task": "adding",
        "T": T,
        "steps": steps,
        "hidden": hidden,
        "test_size": s["test_size"],
        "batch_size": s["batch_size"],
        "lr": s["lr"],
        "optimizer": s.get("optimizer", "adam"),
        "seed": seed,
        "baseline_mse": ADDING_BASELINE,
        "results": results,
        "plot": None,
    }
    return _with_plot(result, s.get("plot"))


def train_adding(
    models=("rnn", "lstm", "gru"), T=100, steps=2000, hidden=64, test_size=2000, seed=0, progress=False,
    optimizer="adam", plot=None,
) -> dict:
    """``run_adding(plan_adding(...))``."""
    plan = plan_adding(models, T, steps, hidden, test_size, seed, optimizer, plot)
    return run_adding(plan, progress=progress)


# ---------------------------------------------------------------------------------------------- vanishing
#: float64 numbers per time step and hidden unit that ``vanishing_gradients`` holds at its peak (measured
#: with tracemalloc: RNN 2.9, LSTM 8.4, GRU 6.2; rounded up)
_VANISHING_PER_HIDDEN = {"RNN": 4, "LSTM": 9, "GRU": 7}


def _vanishing_bytes(T, hidden, curves=6):
    model = max(
        _F64 * T * (c * hidden + 30) + _recurrent_param_bytes(name, 10, hidden, 10)
        for name, c in _VANISHING_PER_HIDDEN.items()
    )
    return model + curves * (T + 1) * 100  # the norms as Python lists, JSON and plot points


def plan_vanishing(T=100, hidden=32, seed=0, forget_bias=1.0, plot=None) -> Plan:
    """Check everything ``run_vanishing`` needs; computes nothing."""
    T = check_int("T", T, minimum=1)
    hidden = check_int("hidden", hidden, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    if (
        isinstance(forget_bias, bool)
        or not isinstance(forget_bias, (int, float))
        or not math.isfinite(forget_bias)
    ):
        raise ValueError(f"--forget-bias must be a finite number; got {forget_bias!r}")
    problems, warns = _Problems(), []
    if plot is not None:
        plot = problems.attempt("", _check_plot_path, plot)
        if plot is not None and not plots.available():  # the default --plot: the table alone will do
            warns.append(f"no plot: matplotlib is not installed ({plots.INSTALL_HINT})")
            plot = None
    problem = _memory_problem(
        f"the vanishing-gradient table with --T {T} and --hidden {hidden}",
        _vanishing_bytes,
        dict(T=T, hidden=hidden),
        [("--T", "T", 1), ("--hidden", "hidden", 1)],
    )
    if problem:
        problems.append(problem)
    problems.raise_if_any()
    settings = dict(T=T, hidden=hidden, seed=seed, forget_bias=float(forget_bias), plot=plot)
    header = [f"||dE_T/ds_k|| on one random sequence of length T={T}, H={hidden}, default initialisation:"]
    return Plan("vanishing", settings, header, warns, memory=_vanishing_bytes(T, hidden))


def run_vanishing(plan: Plan, progress=False, input_size=10, output_size=10) -> dict:
    """``||dE_T/ds_k||`` against T - k for RNN, LSTM and GRU on the same random sequence, default init.

    ``forget_bias`` (0 to skip) adds one more LSTM whose forget-gate bias is raised by that much: the usual
    remedy. Returns the norms and, when ``plot`` is a path (matplotlib installed), writes the figure there
    (``plots.plot_vanishing``; the type from the suffix).
    """
    progress = _check_progress(progress)
    s = plan.settings
    T, hidden, seed, forget_bias = s["T"], s["hidden"], s["seed"], s["forget_bias"]
    rng = np.random.default_rng(seed)
    X = rng.integers(0, input_size, (T, 1))
    Y = rng.integers(0, output_size, (T, 1))
    runs = [(name.lower(), name, 0.0) for name in RECURRENT_MODELS]
    # The same LSTM with its forget-gate bias raised by `forget_bias`: f = sigmoid(. + 1) ~ 0.73 instead of
    # ~0.5, and the cell-state path dc_{k-1} = dc_k * f decays that much more slowly.
    if forget_bias:
        runs.append((f"lstm+fb{forget_bias:g}", "LSTM", forget_bias))
    bar = Bar(f"vanishing T={T}", "model", progress)
    bar.start(1, 1, len(runs))
    curves = {}
    for i, (key, name, raise_by) in enumerate(runs):
        net = make_recurrent(name, input_size, hidden, output_size, seed=seed)
        if raise_by:
            net.params["b"][hidden : 2 * hidden] += raise_by
        norms = vanishing_gradients(net, X, Y)
        curves[key] = {part: v.tolist() for part, v in norms.items()}
        bar.update(i + 1)
    bar.end({})
    result = {
        "task": "vanishing",
        "T": T,
        "hidden": hidden,
        "seed": seed,
        "forget_bias": forget_bias,
        "curves": curves,
        "plot": None,
    }
    if s["plot"] is not None:
        result["plot"] = plots.plot_vanishing(result, s["plot"])
    return result


def vanishing(T=100, hidden=32, seed=0, forget_bias=1.0, plot=None, progress=False) -> dict:
    """``run_vanishing(plan_vanishing(...))``; the plan's warnings go through ``warnings.warn``."""
    return run_vanishing(_warn_all(plan_vanishing(T, hidden, seed, forget_bias, plot)), progress=progress)



# ---------------------------------------------------------------------------------------------- depth
#: ``manual-bp depth``: the seed's digits set-up made deep (Nielsen 2015, chapter 5: [784, 30, 30, 30, 30, 10]
#: on MNIST; here the 8x8 digits, 64 inputs): sigmoid output, squared error, plain SGD with the seed's
#: lr 3.0 and batches of 10, on the first DEPTH_TRAIN training images (Nielsen's 1000)
DEPTH_DEFAULTS = {"hidden_sizes": (30, 30, 30, 30), "activation": "sigmoid", "epochs": 10, "lr": 3.0}
DEPTH_ACTIVATIONS = ("sigmoid", "tanh", "relu")
DEPTH_BATCH = 10
DEPTH_TRAIN = 1000


def _depth_bytes(n_train, n_test, sizes):
    """The data (and its one-hot targets), parameters, gradients and SGD state, and the activations and
    deltas of one full-batch ``loss_and_grad`` over the training set."""
    params = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
    data = (n_train + n_test) * (sizes[0] + sizes[-1])
    return _F64 * (data + 4 * params + 4 * max(n_train, n_test) * sum(sizes))


def plan_depth(hidden_sizes=(30, 30, 30, 30), activation="sigmoid", epochs=10, lr=3.0, seed=0,
               plot=None) -> Plan:
    """Check and load everything ``run_depth`` needs: the digits, the sizes, the plot path; trains nothing.

    hidden_sizes : the widths of the hidden layers (the input 64 and output 10 come from the digits).
    activation : of the hidden layers (``DEPTH_ACTIVATIONS``); the output is sigmoid with squared error.
    epochs : of SGD (0: the gradients at initialisation only). lr : SGD's step size (batches of 10).
    plot : where to draw ``plots.plot_depth`` (.png, .pdf or .svg), or None.
    """
    if isinstance(hidden_sizes, (str, bytes)) or not hasattr(hidden_sizes, "__len__"):
        raise TypeError(f"hidden_sizes must be a list of layer widths; got {hidden_sizes!r}")
    if len(hidden_sizes) < 1:
        raise ValueError("hidden_sizes must list at least one hidden layer; got []")
    hidden_sizes = [check_int(f"hidden_sizes[{i}]", n, minimum=1) for i, n in enumerate(hidden_sizes)]
    if activation not in DEPTH_ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(DEPTH_ACTIVATIONS)}; got {activation!r}")
    epochs = check_int("epochs", epochs, minimum=0)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"--lr must be a finite number > 0; got {lr!r}")
    seed = check_int("seed", seed, minimum=0)
    problems = _Problems()
    plot = _plan_plot(problems, plot)
    parts = problems.attempt("", datasets.load_digits, seed=seed)
    if parts is not None:
        X_train, y_train, X_test, y_test = parts
        X_train, y_train = X_train[:DEPTH_TRAIN], y_train[:DEPTH_TRAIN]
        sizes = [X_train.shape[1]] + hidden_sizes + [10]
        problem = _memory_problem(
            f"the MLP {sizes}",
            _depth_bytes,
            dict(n_train=len(X_train), n_test=len(X_test), sizes=sizes),
            [],
        )
        if problem:
            problems.append(problem)
    problems.raise_if_any()
    settings = dict(sizes=sizes, activation=activation, epochs=epochs, lr=float(lr), seed=seed, plot=plot,
                    batch_size=DEPTH_BATCH, n_train=len(X_train), n_test=len(X_test))
    header = [
        f"||dE/db^(l)|| of each layer of {sizes}: {activation} hidden layers, sigmoid output, squared error; "
        f"the full-batch gradient on {len(X_train)} scikit-learn 8x8 digits, at initialisation (seed {seed})"
        + (f" and after each of {_plural(epochs, 'epoch')} of SGD (lr {lr:g}, batches of {DEPTH_BATCH})"
           if epochs else "")
    ]
    data = {"X_train": X_train, "Y_train": np.eye(10)[y_train], "X_test": X_test, "y_test": y_test}
    return Plan("depth", settings, header, [], data, memory=_depth_bytes(len(X_train), len(X_test), sizes))


def depth_norms(net, X, Y):
    """``(E, [||dE/db^(1)||, ..., ||dE/db^(L)||])``: the bias gradient of each layer from the model's own
    ``loss_and_grad`` (BP4), the full batch ``X, Y``."""
    E, grads = net.loss_and_grad(X, Y)
    return float(E), [float(np.linalg.norm(grads[f"b{l}"])) for l in range(1, net.L + 1)]


def run_depth(plan: Plan, progress=False) -> dict:
    """The vanishing gradient of a deep feed-forward net: ``||dE/db^(l)||`` per layer l, at initialisation
    and after each epoch of SGD; the ratio of each layer's norm to the output layer's (layer L)."""
    progress = _check_progress(progress)
    s, d = plan.settings, plan.data
    X, Y = d["X_train"], d["Y_train"]
    net = MLP(s["sizes"], s["activation"], "sigmoid", "squared_error", seed=s["seed"])
    E, norms = depth_norms(net, X, Y)
    history = [{"epoch": 0, "loss": E, "grad_norms": norms}]

    def measure(record, run):
        E, norms = depth_norms(net, X, Y)
        if not all(math.isfinite(x) for x in [E] + norms):
            raise TrainingDiverged(f"epoch {record['epoch']}: the loss or a gradient is not finite")
        history.append({"epoch": record["epoch"], "loss": E, "grad_norms": norms})

    if s["epochs"]:
        bar = Bar(f"depth {s['sizes']}", "batch", progress,
                  summary=lambda r: f"training loss {format_number(r['loss'])}")
        _train(bar, f"the MLP {s['sizes']}", fit, net, SGD(net.params, lr=s["lr"]), X, Y, epochs=s["epochs"],
               batch_size=s["batch_size"], seed=s["seed"], progress=bar, callbacks=[measure])
    at_init = history[0]["grad_norms"]
    last = at_init[-1]
    layers = [
        {"layer": l, "width": s["sizes"][l], "grad_norm": x, "ratio": x / last if last else None}
        for l, x in enumerate(at_init, start=1)
    ]
    result = {
        "task": "depth",
        "sizes": s["sizes"],
        "activation": s["activation"],
        "output": "sigmoid",
        "loss": "squared_error",
        "lr": s["lr"],
        "batch_size": s["batch_size"],
        "epochs": s["epochs"],
        "seed": s["seed"],
        "data": "scikit-learn 8x8 digits",
        "n_train": s["n_train"],
        "n_test": s["n_test"],
        "layers": layers,
        "history": history,
        "test_accuracy": float((net.predict(d["X_test"]) == d["y_test"]).mean()),
        "plot": None,
    }
    if s["plot"] is not None:
        result["plot"] = plots.plot_depth(result, s["plot"])
    return result


def depth(hidden_sizes=(30, 30, 30, 30), activation="sigmoid", epochs=10, lr=3.0, seed=0, plot=None,
          progress=False) -> dict:
    """``run_depth(plan_depth(...))``."""
    return run_depth(plan_depth(hidden_sizes, activation, epochs, lr, seed, plot), progress=progress)
