"""``manual-bp gradcheck``: check your own gradient function against your loss, from the command line.

    manual-bp gradcheck my_module:loss my_module:grad --params params.npz [--fast] [--json] [--seed N]
    python -m manual_bp.gradcheck_command my_module:loss my_module:grad --params params.npz

``loss(params) -> float`` and ``grad(params) -> dict`` (or ``-> (loss, dict)``) are imported from a module: a
dotted name importable from the current directory, or a path to a ``.py`` file (``path/to/model.py:loss``).
``params`` are the arrays of the ``.npz`` archive, by name. The report (``manual_bp.gradcheck``) goes to
stdout. Exit status: 0 pass (kinks and unresolved parameters are reported, not failures), 1 fail (including
a loss or gradient that writes into its inputs or is not deterministic), 2 bad input, with a one-line
message on stderr and no traceback (missing module, missing function, unreadable .npz, a function that
raises).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .gradcheck import GradcheckError, gradcheck

PROG = "manual-bp gradcheck"


class BadInput(Exception):
    """What the command line named cannot be used: exit status 2."""


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("loss", metavar="MODULE:LOSS", help="loss(params) -> float")
    parser.add_argument(
        "grad", metavar="MODULE:GRAD", help="grad(params) -> dict of arrays (or (loss, dict))"
    )
    parser.add_argument(
        "--params",
        required=True,
        metavar="FILE.npz",
        help="the point: named float arrays (required; no default)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="a few random directions, cost independent of the parameter count (default: every element)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON (default: text)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random directions (default 0)")
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``gradcheck`` subcommand to an argparse ``subparsers`` object; returns its parser."""
    parser = subparsers.add_parser(
        "gradcheck",
        help="check your own gradient function against your loss (Taylor-remainder test)",
        description="Import LOSS and GRAD, load the parameters from FILE.npz and check GRAD against LOSS "
        "with manual_bp.gradcheck. Exit 0 pass, 1 fail, 2 bad input.",
    )
    return _configure(parser)


def _load_function(spec: str, what: str):
    module_name, sep, fn_name = spec.rpartition(":")
    if not sep or not module_name or not fn_name:
        raise BadInput(f"{what} must be MODULE:FUNCTION (or path/to/file.py:FUNCTION); got {spec!r}")
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise BadInput(f"cannot import the {what} function: no file {module_name}")
        spec_ = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec_)
        try:
            spec_.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - any error in the user's module is bad input
            raise BadInput(f"importing {module_name} raised {type(exc).__name__}: {exc}") from None
    else:
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise BadInput(f"cannot import module {module_name!r} for the {what} function: {exc}") from None
        except Exception as exc:  # noqa: BLE001
            raise BadInput(f"importing module {module_name!r} raised {type(exc).__name__}: {exc}") from None
    fn = getattr(module, fn_name, None)
    if fn is None:
        raise BadInput(f"module {module_name!r} has no function {fn_name!r} (the {what} function)")
    if not callable(fn):
        raise BadInput(f"{module_name}:{fn_name} is a {type(fn).__name__}, not a function")
    return fn


def _load_params(path: str) -> dict:
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise BadInput(f"no params file {path}") from None
    except (OSError, ValueError, EOFError) as exc:
        raise BadInput(f"cannot read {path} as a .npz archive: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise BadInput(f"{path} holds a single array; expected a .npz archive of named arrays")
    try:
        params = {k: np.array(archive[k]) for k in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BadInput(f"cannot read {path} as a .npz archive: {exc}") from None
    finally:
        archive.close()
    if not params:
        raise BadInput(f"{path} holds no arrays")
    bad = {k: str(v.dtype) for k, v in params.items() if v.dtype.kind != "f"}
    if bad:
        raise BadInput(f"{path}: parameters must be float arrays; got {bad}")
    return params


class _UserError(Exception):
    """The user's function raised: exit status 2."""


def _guarded(fn, name):
    """``fn`` whose exceptions become _UserError (a write into a read-only input is left to gradcheck)."""

    def call(*args):
        try:
            return fn(*args)
        except GradcheckError:
            raise
        except ValueError as exc:
            if "read-only" in str(exc):
                raise
            raise _UserError(f"{name} raised ValueError: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - whatever the user's code raises is reported, not traced
            raise _UserError(f"{name} raised {type(exc).__name__}: {exc}") from None

    return call


def run(args) -> int:
    """Run the check for parsed arguments (``loss``, ``grad``, ``params``, ``fast``, ``json``, ``seed``)."""
    try:
        loss = _guarded(_load_function(args.loss, "loss"), args.loss)
        grad = _guarded(_load_function(args.grad, "grad"), args.grad)
        params = _load_params(args.params)

        def grads(p):
            out = grad(p)
            if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
                out = out[1]  # grad may be a loss_and_grad
            return out

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the dtype note is in the report
            result = gradcheck(loss, params, grads, fast=args.fast, seed=args.seed)
    except GradcheckError as exc:  # the code under test writes into its inputs or is not deterministic
        if args.json:
            print(json.dumps({"ok": False, "verdict": "fail", "error": str(exc)}, indent=2))
        else:
            print(f"FAIL {exc}")
        return 1
    except (BadInput, _UserError, TypeError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), indent=2) if args.json else str(result))
    return 0 if result.ok else 1


def main(argv=None) -> int:
    """``python -m manual_bp.gradcheck_command``: the subcommand on its own."""
    parser = _configure(argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0]))
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess
    sys.exit(main())
