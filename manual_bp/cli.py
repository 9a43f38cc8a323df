"""The ``manual-bp`` command line (also ``python -m manual_bp``).

Bad arguments get a one-line message and exit status 2 (argparse's convention), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .datasets import MissingDependency


def _int_at_least(minimum, what):
    """An argparse type: an integer >= ``minimum``, with a message naming what was expected and what came."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} integer; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer; got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_nonneg_int = _int_at_least(0, "non-negative")


def build_parser() -> argparse.ArgumentParser:
    from .check import FAMILIES

    parser = argparse.ArgumentParser(
        prog="manual-bp", description="Backpropagation derived by hand, checked against oracles."
    )
    parser.add_argument("--version", action="version", version=f"manual-bp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    check = sub.add_parser(
        "check",
        help="check hand-derived gradients of random models against torch autograd and finite differences",
        description="Draw seeded random models and compare their gradients with torch autograd and central "
        "finite differences. Exits 1 if any case fails.",
    )
    check.add_argument("--n", type=_positive_int, default=8, help="random cases per model family (default 8)")
    check.add_argument("--seed", type=_nonneg_int, default=0, help="seed for the drawn cases (default 0)")
    check.add_argument(
        "--models",
        default=",".join(FAMILIES),
        help=f"comma-separated families to check (default: all of {','.join(FAMILIES)})",
    )
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")

    train = sub.add_parser("train", help="train a model on a real task (digits, text, the adding problem)")
    tasks = train.add_subparsers(dest="task", metavar="TASK")
    tasks.required = True

    def common(p, default_seed=0):
        p.add_argument("--seed", type=_nonneg_int, default=default_seed, help="seed (default 0)")
        p.add_argument("--quick", action="store_true", help="a tiny budget that finishes in seconds")
        p.add_argument("--json", action="store_true", help="print the results as JSON")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    mlp = tasks.add_parser(
        "mlp",
        help="handwritten digits (scikit-learn's 8x8 set, or --data FILE.npz)",
        description="Train the seed's MLP set-up and the best documented one on the 8x8 "
        "digits and report held-out test accuracy.",
    )
    mlp.add_argument(
        "--data", metavar="FILE.npz", help="your own data: X_train, y_train, X_test, y_test (or X, y)"
    )
    mlp.add_argument("--save", metavar="FILE.npz", help="save the last set-up's model and optimizer there")
    mlp.add_argument("--epochs", type=_positive_int, help="epochs per set-up (default 60; 5 with --quick)")
    common(mlp)

    lm = tasks.add_parser(
        "lm",
        help="character-level language model on the Python docs (or --text FILE)",
        description="Train a character-level language model by truncated BPTT with the state "
        "carried across chunks; print held-out bits per character each epoch and a sample.",
    )
    lm.add_argument("--model", choices=["rnn", "lstm", "gru"], default="lstm", help="cell (default lstm)")
    lm.add_argument("--text", metavar="FILE", help="a UTF-8 text file (default: pydoc_data's topics)")
    lm.add_argument(
        "--save", metavar="FILE.npz", help="save the model, optimizer, schedule and vocabulary there"
    )
    lm.add_argument("--epochs", type=_positive_int, help="epochs (default 5; 2 with --quick)")
    lm.add_argument("--hidden", type=_positive_int, default=128, help="hidden size H (default 128)")
    lm.add_argument("--seq-len", type=_positive_int, default=50, help="chunk length T (default 50)")
    lm.add_argument(
        "--max-chars",
        type=_positive_int,
        help="use the first this many characters (default 200000; 20000 with --quick)",
    )
    common(lm)

    adding = tasks.add_parser(
        "adding",
        help="the adding problem (Hochreiter & Schmidhuber 1997)",
        description="Train RNN, LSTM and GRU for the same budget on the adding problem and "
        "report test MSE against the 0.167 of predicting the mean.",
    )
    adding.add_argument(
        "--model", choices=["rnn", "lstm", "gru", "all"], default="all", help="which model (default all)"
    )
    adding.add_argument("--T", type=_positive_int, default=100, help="sequence length (default 100)")
    adding.add_argument(
        "--steps", type=_positive_int, help="Adam steps per model (default 2000; 60 with --quick)"
    )
    adding.add_argument("--hidden", type=_positive_int, default=64, help="hidden size H (default 64)")
    common(adding)

    van = sub.add_parser(
        "vanishing",
        help="||dE_T/ds_k|| against T-k for RNN, LSTM and GRU (table and plot)",
        description="Measure the vanishing gradient on one random sequence with default "
        "initialisation: a table, and a PNG plot when matplotlib is installed.",
    )
    van.add_argument("--T", type=_positive_int, default=100, help="sequence length (default 100)")
    van.add_argument("--hidden", type=_positive_int, default=32, help="hidden size H (default 32)")
    van.add_argument(
        "--plot",
        default="vanishing.png",
        metavar="FILE.png",
        help="where to write the plot (default vanishing.png); --plot '' for none",
    )
    van.add_argument(
        "--forget-bias",
        type=float,
        default=1.0,
        help="also show an LSTM with its forget-gate bias raised by this much (default 1; 0: skip)",
    )
    van.add_argument("--seed", type=_nonneg_int, default=0, help="seed (default 0)")
    van.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def _cmd_check(args, parser) -> int:
    from .check import FAMILIES, run_check

    families = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in families if m not in FAMILIES]
    if unknown or not families:
        parser.error(f"--models: unknown family {unknown or args.models!r}; choose from {','.join(FAMILIES)}")
    return run_check(n=args.n, seed=args.seed, families=families, as_json=args.json)


def _emit(result, as_json):
    if as_json:
        print(json.dumps(result, indent=2))


def _cmd_train(args, parser) -> int:
    from . import tasks

    log = _silent if args.json else print
    progress = not (args.no_progress or args.json)
    if args.task == "mlp":
        result = tasks.train_mlp(
            data=args.data,
            epochs=args.epochs,
            quick=args.quick,
            seed=args.seed,
            progress=progress,
            log=log,
            save=args.save,
        )
        if not args.json:
            print(
                format_rows(
                    ["set-up", "epochs", "train accuracy", "test accuracy"],
                    [
                        [r["setup"], r["epochs"], f"{r['train_accuracy']:.4f}", f"{r['test_accuracy']:.4f}"]
                        for r in result["results"]
                    ],
                )
            )
    elif args.task == "lm":
        result = tasks.train_lm(
            model=args.model,
            text=args.text,
            epochs=args.epochs,
            hidden=args.hidden,
            chunk_length=args.seq_len,
            max_chars=args.max_chars,
            quick=args.quick,
            seed=args.seed,
            progress=progress,
            log=log,
            save=args.save,
        )
    else:
        models = ("rnn", "lstm", "gru") if args.model == "all" else (args.model,)
        if args.T < 2:
            parser.error(f"--T: the adding problem needs T >= 2; got {args.T}")
        result = tasks.train_adding(
            models=models,
            T=args.T,
            steps=args.steps,
            hidden=args.hidden,
            quick=args.quick,
            seed=args.seed,
            log=log,
        )
        if not args.json:
            print(
                format_rows(
                    ["model", "T", "steps", "test MSE", "baseline", "seconds"],
                    [
                        [
                            r["model"],
                            result["T"],
                            result["steps"],
                            f"{r['test_mse']:.4f}",
                            f"{result['baseline_mse']:.3f}",
                            f"{r['seconds']:.0f}",
                        ]
                        for r in result["results"]
                    ],
                )
            )
    _emit(result, args.json)
    return 0


def _cmd_vanishing(args, parser) -> int:
    from . import tasks

    result = tasks.vanishing(
        T=args.T, hidden=args.hidden, seed=args.seed, forget_bias=args.forget_bias, plot=args.plot or None
    )
    if args.json:
        _emit(result, True)
        return 0
    T = args.T
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
    print(f"||dE_T/ds_k|| on one random sequence of length T={T}, H={args.hidden}, default initialisation:")
    print(format_rows(header, rows))
    if args.plot:
        print(
            f"plot written to {result['plot']}"
            if result["plot"]
            else "no plot: matplotlib is not installed (pip install 'manual-bp[plot]')"
        )
    return 0


def format_rows(header, rows) -> str:
    """A plain-text table with aligned columns."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _silent(*args, **kwargs):
    pass


COMMANDS = {"check": _cmd_check, "train": _cmd_train, "vanishing": _cmd_vanishing}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args, parser)
    except MissingDependency as exc:
        print(f"manual-bp: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError, UnicodeDecodeError, ValueError) as exc:
        # bad data or paths named on the command line: a message, never a traceback
        print(f"manual-bp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
