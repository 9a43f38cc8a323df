"""The ``manual-bp`` command line (also ``python -m manual_bp``).

Every command checks all of its input before any work (flags, files and their contents, output paths, the
memory the run needs) and reports everything wrong in one line, ``manual-bp: error: ...`` on stderr, with
exit status 2 and no traceback. Results go to stdout; progress bars (tqdm, only when stderr is a terminal)
and warnings go to stderr. ``--quick`` sets the defaults of the flags not given; an explicit flag always
wins.

Exit status: 0 success; 1 a check failed, training diverged (a non-finite loss or gradient) or memory ran
out; 2 bad input; 130 interrupted.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

import numpy as np

from . import __version__
from .datasets import MissingDependency

EPILOG = (
    "Exit status: 0 success; 1 a check failed, training diverged (a non-finite loss or gradient) or memory "
    "ran out; 2 bad input (one line on stderr); 130 interrupted. Results go to stdout; progress bars (only "
    "when stderr is a terminal) and warnings go to stderr."
)
INT_MAX = 2**63 - 1  # no flag can use more: NumPy sizes and seeds are 64-bit
CHECK_N = (8, 2)  # manual-bp check --n: (default, default with --quick)


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error of every other failure: ``manual-bp: error: ...``, exit 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --n must not quietly mean --no-progress
        super().__init__(*args, **kwargs)

    def error(self, message):
        where = self.prog[len("manual-bp") :].strip()
        where = f"{where}: " if where else ""
        message = " ".join(str(message).split())
        self.exit(2, f"manual-bp: error: {where}{message} (see {self.prog} --help)\n")


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")


def _int_at_least(minimum, what):
    """An argparse type: an integer in [minimum, 2**63 - 1]; the message names ``what`` was expected."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}; got {_shown(text)}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}; got {value}")
        if value > INT_MAX:
            raise argparse.ArgumentTypeError(f"expected {what} below 2**63; got {_shown(text)}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "a non-negative integer")


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; got {_shown(text)}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number; got {_shown(text)}")
    return value


def _families(text):
    from .check import FAMILIES

    names = []
    for part in text.split(","):
        name = part.strip().lower()
        if name and name not in names:
            names.append(name)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        got = ",".join(unknown) if unknown else _shown(text)
        raise argparse.ArgumentTypeError(f"unknown family {got}; choose from {','.join(FAMILIES)}")
    return names


def _default(task, key, what="") -> str:
    """'(default 60; 5 with --quick)' from tasks.PRESETS."""
    from .tasks import PRESETS

    normal, quick = PRESETS[task][key]
    if quick == normal:
        return f"(default {normal})"
    normal = what if normal is None else normal
    return f"(default {normal}; {quick} with --quick)"


def build_parser() -> argparse.ArgumentParser:
    from .check import FAMILIES
    from .models import RECURRENT_MODELS

    cells = [name.lower() for name in RECURRENT_MODELS]
    parser = _Parser(
        prog="manual-bp",
        description="Backpropagation derived by hand, checked against oracles.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"manual-bp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    check = sub.add_parser(
        "check",
        help="check hand-derived gradients of random models against torch autograd and finite differences",
        description="Draw seeded random models and compare their gradients with torch autograd and central "
        "finite differences. Exits 1 if any case fails.",
        epilog=EPILOG,
    )
    check.add_argument(
        "--n",
        metavar="N",
        type=_positive_int,
        help=f"random cases per model family (default {CHECK_N[0]}; {CHECK_N[1]} with --quick)",
    )
    check.add_argument(
        "--seed", metavar="SEED", type=_nonneg_int, default=0, help="seed for the drawn cases (default 0)"
    )
    check.add_argument(
        "--models",
        type=_families,
        default=list(FAMILIES),
        help=f"comma-separated families to check (default: all of {','.join(FAMILIES)})",
    )
    check.add_argument(
        "--quick",
        action="store_true",
        help=f"a quick check: --n {CHECK_N[1]} unless --n is given (default off)",
    )
    check.add_argument("--json", action="store_true", help="print JSON instead of a table (default: a table)")
    check.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (default: a bar over the cases on stderr when it is a terminal)",
    )

    train = sub.add_parser(
        "train",
        help="train a model on a real task (digits, text, the adding problem)",
        description="Train a model on a real task; nothing is downloaded.",
        epilog=EPILOG,
    )
    tasks = train.add_subparsers(dest="task", metavar="TASK")
    tasks.required = True

    def common(p):
        p.add_argument("--seed", metavar="SEED", type=_nonneg_int, default=0, help="seed (default 0)")
        p.add_argument(
            "--quick",
            action="store_true",
            help="a tiny budget that finishes in seconds: the --quick defaults above, for flags not given "
            "(default off)",
        )
        p.add_argument("--json", action="store_true", help="print the results as JSON (default: tables)")
        p.add_argument(
            "--plot",
            metavar="FILE.png",
            help="also draw the training curves there: .png, .pdf or .svg, by the suffix (needs matplotlib: "
            'pip install "manual-bp[plot]"; default: no plot)',
        )
        p.add_argument(
            "--no-progress",
            action="store_true",
            help="no progress bar (default: a bar on stderr when it is a terminal)",
        )

    mlp = tasks.add_parser(
        "mlp",
        help="handwritten digits (scikit-learn's 8x8 set, or --data FILE.npz)",
        description="Train the seed's MLP set-up and the best documented one on the 8x8 digits (or your "
        "data) and report held-out test accuracy.",
        epilog=EPILOG,
    )
    mlp.add_argument(
        "--data",
        metavar="FILE.npz",
        help="your own data: arrays X_train, y_train, X_test, y_test (or X, y, split 80/20 by --seed); "
        "X (N, D) finite numbers, y (N,) integer labels 0, 1, 2, ... (default: scikit-learn's 8x8 digits)",
    )
    mlp.add_argument(
        "--save",
        metavar="FILE.npz",
        help="save the last set-up's model and optimizer there (default: nothing saved); an existing file "
        "is replaced only if it is a manual-bp checkpoint",
    )
    mlp.add_argument(
        "--epochs", metavar="N", type=_positive_int, help=f"epochs per set-up {_default('mlp', 'epochs')}"
    )
    mlp.add_argument(
        "--train-size",
        metavar="N",
        type=_positive_int,
        help=f"train on the first N training samples {_default('mlp', 'train_size', 'all')}",
    )
    common(mlp)

    lm = tasks.add_parser(
        "lm",
        help="character-level language model on the Python docs (or --text FILE)",
        description="Train a character-level language model by truncated BPTT with the state carried across "
        "chunks; report held-out bits per character each epoch and a sample.",
        epilog=EPILOG,
    )
    lm.add_argument(
        "--model", type=str.lower, choices=cells, default="lstm", help="the recurrent cell (default lstm)"
    )
    lm.add_argument(
        "--text", metavar="FILE", help="a UTF-8 text file (default: the Python documentation in pydoc_data)"
    )
    lm.add_argument(
        "--save",
        metavar="FILE.npz",
        help="save the model, optimizer, schedule and vocabulary there (default: nothing saved); an existing "
        "file is replaced only if it is a manual-bp checkpoint",
    )
    lm.add_argument("--epochs", metavar="N", type=_positive_int, help=f"epochs {_default('lm', 'epochs')}")
    lm.add_argument(
        "--hidden", metavar="H", type=_positive_int, help=f"hidden size H {_default('lm', 'hidden')}"
    )
    lm.add_argument(
        "--seq-len",
        metavar="T",
        type=_positive_int,
        help=f"chunk length T of truncated BPTT {_default('lm', 'seq_len')}",
    )
    lm.add_argument(
        "--max-chars",
        metavar="N",
        type=_positive_int,
        help=f"use the first this many characters, the last 10%% held out {_default('lm', 'max_chars')}",
    )
    lm.add_argument(
        "--sample-length",
        metavar="N",
        type=_nonneg_int,
        help=f"characters to generate after training {_default('lm', 'sample_length')}",
    )
    common(lm)

    adding = tasks.add_parser(
        "adding",
        help="the adding problem (Hochreiter & Schmidhuber 1997)",
        description="Train RNN, LSTM and GRU for the same budget of Adam steps on the adding problem and "
        "report test MSE against the 0.167 of predicting the mean.",
        epilog=EPILOG,
    )
    adding.add_argument(
        "--model",
        type=str.lower,
        choices=cells + ["all"],
        default="all",
        help="which model (default all: " + ", ".join(cells) + ")",
    )
    adding.add_argument(
        "--T",
        metavar="T",
        type=_int_at_least(2, "an integer >= 2 (two marked steps, one in each half)"),
        help=f"sequence length {_default('adding', 'T')}",
    )
    adding.add_argument(
        "--steps",
        metavar="N",
        type=_positive_int,
        help=f"optimizer steps per model {_default('adding', 'steps')}; with --optimizer hf each step is a "
        "Hessian-free step of up to 50 CG iterations, so use far fewer (e.g. 100)",
    )
    adding.add_argument(
        "--optimizer",
        type=str.lower,
        choices=["adam", "hf"],
        default="adam",
        help="adam (default; lr 0.01, clip 1, batches of 50) or hf: Hessian-free with structural damping "
        "(Martens & Sutskever 2011; batches of 250)",
    )
    adding.add_argument(
        "--hidden", metavar="H", type=_positive_int, help=f"hidden size H {_default('adding', 'hidden')}"
    )
    adding.add_argument(
        "--test-size",
        metavar="N",
        type=_positive_int,
        help=f"test sequences {_default('adding', 'test_size')}",
    )
    common(adding)

    van = sub.add_parser(
        "vanishing",
        help="||dE_T/ds_k|| against T-k for RNN, LSTM and GRU (table and plot)",
        description="Measure the vanishing gradient on one random sequence with default initialisation: a "
        "table, and a plot when matplotlib is installed. About a second at the defaults (no --quick).",
        epilog=EPILOG,
    )
    van.add_argument(
        "--T", metavar="T", type=_positive_int, help=f"sequence length {_default('vanishing', 'T')}"
    )
    van.add_argument(
        "--hidden", metavar="H", type=_positive_int, help=f"hidden size H {_default('vanishing', 'hidden')}"
    )
    van.add_argument(
        "--plot",
        default="vanishing.png",
        metavar="FILE.png",
        help="where to write the plot: .png, .pdf or .svg (default vanishing.png); --plot '' for none",
    )
    van.add_argument(
        "--forget-bias",
        type=_finite_float,
        default=1.0,
        help="also show an LSTM with its forget-gate bias raised by this much (default 1; 0: skip)",
    )
    van.add_argument("--seed", metavar="SEED", type=_nonneg_int, default=0, help="seed (default 0)")
    van.add_argument("--json", action="store_true", help="print the results as JSON (default: a table)")
    van.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (default: a bar on stderr when it is a terminal)",
    )
    dep = _add_depth_parser(sub)
    from .explain import EXAMPLES

    explain = sub.add_parser(
        "explain",
        help="a worked example: each equation's numbers beside torch's (mlp, logreg, rnn, lstm, gru)",
        description="Run one small model on one sample and print every equation it uses (F1, F2, BP1-BP4; "
        "the recurrent nets' S, O and B equations and their cells') with its numbers, each beside torch's "
        "value for it and the difference. Defaults: mlp the seed's net 2,3,2 (sigmoid, squared error); "
        "logreg 2 features (sigmoid, binary cross-entropy); rnn, lstm and gru D,H,K = 2,3,2 over T = 3 steps "
        "(softmax, cross-entropy). torch (the oracle) is optional: without it only our numbers are shown.",
        epilog=EPILOG,
    )
    explain.add_argument("model", choices=list(EXAMPLES), help="which derivation to show")
    explain.add_argument(
        "--sizes",
        type=_sizes,
        metavar="N,...",
        help="layer sizes: mlp n0,...,nL (default 2,3,2); logreg n0 (default 2); rnn/lstm/gru D,H,K "
        "(default 2,3,2)",
    )
    explain.add_argument("--T", metavar="T", type=_positive_int, help="steps, rnn/lstm/gru only (default 3)")
    explain.add_argument("--seed", metavar="SEED", type=_nonneg_int, default=0, help="seed (default 0)")
    layout = explain.add_mutually_exclusive_group()
    layout.add_argument("--json", action="store_true", help="print the example as JSON (default: text)")
    layout.add_argument(
        "--markdown", action="store_true", help="print one Markdown table per equation (default: text)"
    )
    from .gradcheck_command import add_parser as add_gradcheck

    grad = add_gradcheck(sub)
    for leaf in (check, mlp, lm, adding, van, dep, grad, explain):
        leaf.set_defaults(parser=leaf)  # unrecognized arguments are reported with the command's own name
    return parser


def _widths(text):
    """``"30,30,30"`` -> [30, 30, 30]: hidden-layer widths, each a positive integer."""
    parts = [part.strip() for part in text.split(",")]
    parse = _int_at_least(1, "comma-separated positive integers (hidden-layer widths)")
    if not any(parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers; got {_shown(text)}")
    return [parse(part) for part in parts]


def _positive_float(text):
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0; got {_shown(text)}")
    return value


def _add_depth_parser(sub):
    from .tasks import DEPTH_ACTIVATIONS, DEPTH_BATCH, DEPTH_DEFAULTS, DEPTH_TRAIN

    d = DEPTH_DEFAULTS
    widths = ",".join(map(str, d["hidden_sizes"]))
    dep = sub.add_parser(
        "depth",
        help="||dE/db^(l)|| of each layer of a deep MLP, at initialisation and during training (table, plot)",
        description="The vanishing gradient of a feed-forward net (Nielsen 2015, chapter 5): the norm of "
        "each layer's bias gradient, its speed of learning, on the full batch of the first "
        f"{DEPTH_TRAIN} training digits (scikit-learn's 8x8 set), at initialisation and after each epoch of "
        f"plain SGD (batches of {DEPTH_BATCH}); sigmoid output, squared error, as in the seed. A table, and "
        "a plot with --plot. A few seconds at the defaults.",
        epilog=EPILOG,
    )
    dep.add_argument(
        "--hidden-sizes",
        metavar="N,N,...",
        type=_widths,
        default=list(d["hidden_sizes"]),
        help=f"widths of the hidden layers, input first (default {widths}: the net "
        f"[64, {widths.replace(',', ', ')}, 10])",
    )
    dep.add_argument(
        "--activation",
        type=str.lower,
        choices=DEPTH_ACTIVATIONS,
        default=d["activation"],
        help=f"of the hidden layers (default {d['activation']})",
    )
    dep.add_argument(
        "--epochs",
        metavar="N",
        type=_nonneg_int,
        default=d["epochs"],
        help=f"epochs of SGD (default {d['epochs']}; 0: at initialisation only)",
    )
    dep.add_argument(
        "--lr",
        metavar="LR",
        type=_positive_float,
        default=d["lr"],
        help=f"SGD's learning rate (default {d['lr']:g}, the seed's; relu and tanh want about 0.5)",
    )
    dep.add_argument("--seed", metavar="SEED", type=_nonneg_int, default=0, help="seed (default 0)")
    dep.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also draw the figure there: .png, .pdf or .svg, by the suffix (needs matplotlib: "
        'pip install "manual-bp[plot]"; default: no plot)',
    )
    dep.add_argument("--json", action="store_true", help="print the results as JSON (default: a table)")
    dep.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (default: a bar on stderr when it is a terminal)",
    )
    return dep


# ---------------------------------------------------------------------------------------------- commands
def _cmd_check(args) -> int:
    from .check import run_check
    from .tasks import Bar

    n = args.n if args.n is not None else CHECK_N[bool(args.quick)]
    bar = Bar("check", "case", enabled=not args.no_progress)
    return run_check(n=n, seed=args.seed, families=args.models, as_json=args.json, progress=bar)


def _plan(args):
    from . import tasks
    from .models import RECURRENT_MODELS

    if args.command == "vanishing":
        given = {"T": args.T, "hidden": args.hidden}
        s = tasks.resolve("vanishing", False, **given)
        return tasks.plan_vanishing(
            T=s["T"], hidden=s["hidden"], seed=args.seed, forget_bias=args.forget_bias, plot=args.plot or None
        )
    given = {key: getattr(args, key) for key in tasks.PRESETS[args.task]}
    s = tasks.resolve(args.task, args.quick, **given)
    plot = args.plot  # None: no plot; anything else (even '') is checked as a file name
    if args.task == "mlp":
        return tasks.plan_mlp(data=args.data, save=args.save, seed=args.seed, plot=plot, **s)
    if args.task == "lm":
        return tasks.plan_lm(model=args.model, text=args.text, save=args.save, seed=args.seed, plot=plot, **s)
    models = [m.lower() for m in RECURRENT_MODELS] if args.model == "all" else [args.model]
    return tasks.plan_adding(models=models, seed=args.seed, optimizer=args.optimizer, plot=plot, **s)


def _cmd_train(args) -> int:
    from . import tasks

    plan = _plan(args)  # every check, before any work
    for message in plan.warnings:
        warn(message)
    if not args.json:
        print("\n".join(plan.header), flush=True)
    run = {"mlp": tasks.run_mlp, "lm": tasks.run_lm, "adding": tasks.run_adding}[plan.task]
    with np.errstate(all="ignore"):  # a non-finite loss or gradient stops the run with its own message
        result = run(plan, progress=not args.no_progress)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(FORMATS[plan.task](result))
        if result["plot"]:
            print(f"plot written to {result['plot']}")
    return 0


def _cmd_depth(args) -> int:
    from . import tasks

    plan = tasks.plan_depth(
        hidden_sizes=args.hidden_sizes,
        activation=args.activation,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        plot=args.plot,
    )
    if not args.json:
        print("\n".join(plan.header), flush=True)
    with np.errstate(all="ignore"):  # a non-finite loss or gradient stops the run with its own message
        result = tasks.run_depth(plan, progress=not args.no_progress)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(format_depth(result))
    if result["plot"]:
        print(f"plot written to {result['plot']}")
    return 0


def _cmd_vanishing(args) -> int:
    from . import tasks

    plan = _plan(args)
    for message in plan.warnings:
        warn(message)
    with np.errstate(all="ignore"):  # norms that underflow to 0 are part of the result
        result = tasks.run_vanishing(plan, progress=not args.no_progress)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print("\n".join(plan.header))
    print(format_vanishing(result))
    if result["plot"]:
        print(f"plot written to {result['plot']}")
    return 0


# ---------------------------------------------------------------------------------------------- tables
def _n(x) -> str:
    from .tasks import format_number

    return format_number(x)


def format_mlp(result) -> str:
    rows = [
        [
            r["setup"],
            str(r["sizes"]),
            r["epochs"],
            _n(r["final_loss"]),
            f"{r['train_accuracy']:.4f}",
            f"{r['test_accuracy']:.4f}",
            f"{r['seconds']:.1f}",
        ]
        for r in result["results"]
    ]
    header = ["set-up", "sizes", "epochs", "final loss", "train accuracy", "test accuracy", "seconds"]
    lines = [format_rows(header, rows)]
    if result["saved"]:
        lines.append(
            f"saved the {result['results'][-1]['setup']!r} set-up's model and optimizer to {result['saved']}"
        )
    return "\n".join(lines)


def format_lm(result) -> str:
    rows = [[0, "-", "-", _n(result["untrained_bpc"]) + " (untrained)"]]
    rows += [[e["epoch"], f"{e['lr']:.3g}", _n(e["train_bpc"]), _n(e["val_bpc"])] for e in result["epochs"]]
    lines = [
        format_rows(["epoch", "lr", "train bits/char", "held-out bits/char"], rows),
        f"sample: {result['sample']}",
    ]
    if result["saved"]:
        lines.append(f"saved the model, optimizer, schedule and vocabulary to {result['saved']}")
    return "\n".join(lines)


def format_adding(result) -> str:
    rows = [
        [
            r["model"].upper(),
            result["T"],
            result["hidden"],
            result["steps"],
            _n(r["test_mse"]),
            f"{result['baseline_mse']:.3f}",
            f"{r['seconds']:.1f}",
        ]
        for r in result["results"]
    ]
    table = format_rows(["model", "T", "H", "steps", "test MSE", "the mean's MSE", "seconds"], rows)
    steps = [p["step"] for p in result["results"][0]["curve"]]
    curve = format_rows(
        ["step"] + [f"{r['model'].upper()} test MSE" for r in result["results"]],
        [[step] + [_n(r["curve"][i]["test_mse"]) for r in result["results"]] for i, step in enumerate(steps)],
    )
    return table + "\n\n" + curve


def format_vanishing(result) -> str:
    T = result["T"]
    lags = [l for l in (0, 1, 2, 5, 10, 25, 50, 100, 200, 500) if l <= T]
    header = ["T - k"] + [
        f"{name.upper().replace('+FB', '+fb')} {part}_k"
        for name, parts in result["curves"].items()
        for part in parts
    ]
    rows = [
        [lag] + [f"{values[T - lag]:.2e}" for parts in result["curves"].values() for values in parts.values()]
        for lag in lags
    ]
    return format_rows(header, rows)


def format_depth(result) -> str:
    """Per layer: its width, ||dE/db^(l)|| and its ratio to the output layer's, at initialisation and (when
    it trained) after the last epoch; then the test accuracy."""
    L = len(result["layers"])
    last = result["history"][-1]
    header = ["layer", "width", "||dE/db|| at init", "ratio to layer L"]
    if last["epoch"]:
        header += [f"||dE/db|| after epoch {last['epoch']}", "ratio to layer L"]
    rows = []
    for i, r in enumerate(result["layers"]):
        name = f"{r['layer']}" + (" (output)" if r["layer"] == L else "")
        row = [name, r["width"], f"{r['grad_norm']:.3e}", "-" if r["ratio"] is None else f"{r['ratio']:.3g}"]
        if last["epoch"]:
            x, out = last["grad_norms"][i], last["grad_norms"][-1]
            row += [f"{x:.3e}", f"{x / out:.3g}" if out else "-"]
        rows.append(row)
    lines = [format_rows(header, rows)]
    first, final = result["history"][0]["loss"], last["loss"]
    if last["epoch"]:
        lines.append(f"training loss {_n(first)} at initialisation, {_n(final)} after epoch {last['epoch']}")
    lines.append(f"test accuracy {result['test_accuracy']:.4f} ({result['n_test']} test digits)")
    return "\n".join(lines)


FORMATS = {"mlp": format_mlp, "lm": format_lm, "adding": format_adding}


def format_rows(header, rows) -> str:
    """A plain-text table with aligned columns."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main
def _one_line(exc) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def error(message) -> None:
    print(f"manual-bp: error: {_one_line(message)}", file=sys.stderr)


def warn(message) -> None:
    print(f"manual-bp: warning: {_one_line(message)}", file=sys.stderr)


@functools.lru_cache(maxsize=1)
def _parser() -> argparse.ArgumentParser:
    """``build_parser()``, built once per process (parsing leaves a parser unchanged)."""
    return build_parser()


def _sizes(text):
    """An argparse type: comma-separated positive integers."""
    parts = [p.strip() for p in text.split(",")]
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas; got {_shown(text)}") from None
    if min(sizes) < 1 or max(sizes) > 4096:
        raise argparse.ArgumentTypeError(f"expected sizes in 1..4096 separated by commas; got {_shown(text)}")
    return sizes


def _cmd_explain(args) -> int:
    from . import explain, harness

    explain.example(args.model, args.sizes, args.T, args.seed)  # every check, before torch's import
    ref, reason = harness.oracle()
    if ref is None:
        warn(f"torch is not installed ({reason}): showing our numbers alone")
    with np.errstate(all="ignore"):
        result = explain.explain(args.model, args.sizes, args.T, args.seed,
                                 torch_values=None if ref is None else ref.trace.trace)
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.markdown:
        print(explain.format_markdown(result))
    else:
        print(explain.format_text(result))
    return 0


def _cmd_gradcheck(args) -> int:
    from .gradcheck_command import run

    return run(args)


COMMANDS = {
    "check": _cmd_check,
    "train": _cmd_train,
    "vanishing": _cmd_vanishing,
    "depth": _cmd_depth,
    "gradcheck": _cmd_gradcheck,
    "explain": _cmd_explain,
}


def main(argv=None) -> int:
    """Run one command; returns the exit status (argparse's own errors exit 2 through SystemExit).

    Bad input of any kind is one line on stderr and status 2. ``MANUAL_BP_DEBUG=1`` re-raises it with its
    traceback instead; any other exception type is a bug and surfaces as one.
    """
    from .tasks import TrainingDiverged

    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return COMMANDS[args.command](args)
    except TrainingDiverged as exc:
        error(f"training diverged: {_one_line(exc)}")
        return 1
    except MemoryError:
        error("out of memory (the estimate made before the run was too low); try smaller sizes")
        return 1
    except (MissingDependency, ValueError, TypeError, OSError) as exc:
        if os.environ.get("MANUAL_BP_DEBUG"):
            raise
        error(exc)
        return 2
    except KeyboardInterrupt:
        print("manual-bp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
