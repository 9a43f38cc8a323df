"""The ``manual-bp`` command line (also ``python -m manual_bp``).

Bad arguments get a one-line message and exit status 2 (argparse's convention), never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__


class _Parser(argparse.ArgumentParser):
    """argparse with our exit status for usage errors and no traceback."""


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value}")
    return value


def _nonneg_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer; got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer; got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .check import FAMILIES

    parser = _Parser(prog="manual-bp", description="Backpropagation derived by hand, checked against oracles.")
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
    return parser


def _cmd_check(args, parser) -> int:
    from .check import FAMILIES, run_check

    families = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in families if m not in FAMILIES]
    if unknown or not families:
        parser.error(f"--models: unknown family {unknown or args.models!r}; choose from {','.join(FAMILIES)}")
    return run_check(n=args.n, seed=args.seed, families=families, as_json=args.json)


COMMANDS = {"check": _cmd_check}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args, parser)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
