"""``manual-bp check``: draw seeded random models and check their gradients against two oracles.

For each case the table shows the max relative error (norm-wise per parameter, see ``gradcheck``) of our
hand-derived gradients against

- torch autograd through torch's own modules (``reference/``), in float64 for a float64 model, and
- central finite differences of our own loss, always in float64 (a float32 model is checked through a
  float64 copy of itself: finite differences in float32 are too coarse to mean anything).

A family of cases is a function ``cases(rng, n) -> list[Case]``; ``FAMILIES`` lists them in table order.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._check_recurrent import gru_cases, lstm_cases, rnn_cases
from .gradcheck import compare_grads, numerical_grad
from .mlp import MLP

# Allowances, by dtype of the model under test (see tests/helpers.py for the reasoning).
TOL_TORCH = {"float64": 1e-10, "float32": 1e-4}
TOL_FD = 1e-6
FLOOR_TORCH = 1e-12
FLOOR_FD = 1e-3
FD_EPS = 1e-6


@dataclass
class Case:
    """One row of the table.

    grads        : () -> dict, our gradients (model dtype), keys = what is compared
    torch_grads  : (reference_module) -> dict, autograd's gradients in our layout, computed in float64
    fd_loss      : (params) -> float, our loss at a float64 parameter dict (for finite differences)
    fd_params    : () -> dict, the float64 point at which to take finite differences (the keys FD covers)
    fd_grads     : () -> dict, our float64 gradients at that point
    """

    model: str
    arch: str
    dtype: str
    grads: Callable[[], dict]
    torch_grads: Callable[[object], dict]
    fd_loss: Callable[[dict], float]
    fd_params: Callable[[], dict]
    fd_grads: Callable[[], dict]


def _with_params(model, params):
    """A loss-at-params function that swaps ``params`` in and always restores the model's own."""

    def run(fn):
        old = model.params
        model.params = params
        try:
            return fn()
        finally:
            model.params = old

    return run


def _cast_model(model, cls_kwargs: dict, dtype):
    """A copy of ``model`` in ``dtype`` with the same parameter values."""
    copy = type(model)(**{**cls_kwargs, "dtype": dtype})
    copy.params = {k: v.astype(dtype) for k, v in model.params.items()}
    return copy


def _mlp_case(name, net, X, Y) -> Case:
    net64 = _cast_model(net, net.config(), np.float64)

    def fd_loss(p):
        return _with_params(net64, p)(lambda: net64.loss(X, Y))

    return Case(
        model=name,
        arch=f"{net.sizes} {net.hidden_activation}/{net.output_activation} {net.loss_name} N={len(X)}",
        dtype=net.dtype.name,
        grads=lambda: net.loss_and_grad(X, Y, input_grad=True)[1],
        torch_grads=lambda ref: ref.mlp_loss_and_grad(net, X, Y, input_grad=True, dtype=np.float64)[1],
        fd_loss=fd_loss,
        fd_params=lambda: net64.params,
        fd_grads=lambda: net64.loss_and_grad(X, Y)[1],
    )


def _off_relu_kink(net, X, margin=1e-4):
    """True unless a relu pre-activation lies within ``margin`` of 0 (finite differences step 1e-6)."""
    if net.hidden_activation != "relu":
        return True
    Z, _ = net._forward(np.asarray(X, dtype=net.dtype))
    return all(np.abs(z).min() > margin for z in Z[1:-1])


def mlp_cases(rng, n):
    """Random MLPs: 1-4 weight layers, widths 1-12, every activation/loss pairing, both dtypes."""
    hidden = ["sigmoid", "tanh", "relu", "identity", "softplus"]
    pairs = [
        ("squared_error", "sigmoid"),
        ("squared_error", "tanh"),
        ("squared_error", "identity"),
        ("cross_entropy", "softmax"),
        ("binary_cross_entropy", "sigmoid"),
    ]
    out = []
    for i in range(n):
        L = int(rng.integers(1, 5))
        sizes = [int(s) for s in rng.integers(1, 13, L + 1)]
        loss, act = pairs[i % len(pairs)]
        if loss == "cross_entropy":
            sizes[-1] = max(sizes[-1], 2)
        dtype = np.float32 if i % 4 == 3 else np.float64
        net = MLP(
            sizes,
            hidden[int(rng.integers(len(hidden)))],
            act,
            loss,
            dtype=dtype,
            seed=int(rng.integers(2**31)),
        )
        N = int(rng.integers(1, 9))
        X = rng.standard_normal((N, sizes[0]))
        while not _off_relu_kink(net, X):  # a finite-difference step must not cross relu's kink
            X = rng.standard_normal((N, sizes[0]))
        if loss == "cross_entropy":
            Y = rng.integers(0, sizes[-1], N)
        elif loss == "binary_cross_entropy":
            Y = rng.uniform(0, 1, (N, sizes[-1]))
        else:
            Y = rng.standard_normal((N, sizes[-1]))
        out.append(_mlp_case("MLP", net, X, Y))
    return out


def logreg_cases(rng, n):
    """Logistic regression, the seed's two-layer net: MLP([n, 1], sigmoid, binary cross-entropy)."""
    out = []
    for _ in range(max(1, n // 4)):
        d = int(rng.integers(1, 9))
        net = MLP(
            [d, 1], output_activation="sigmoid", loss="binary_cross_entropy", seed=int(rng.integers(2**31))
        )
        N = int(rng.integers(2, 17))
        X = rng.standard_normal((N, d))
        y = (rng.uniform(size=N) < 0.5).astype(np.float64)
        out.append(_mlp_case("logreg", net, X, y))
    return out


#: table order; later issues add the recurrent families
FAMILIES = {"mlp": mlp_cases, "logreg": logreg_cases, "rnn": rnn_cases, "lstm": lstm_cases, "gru": gru_cases}


def _load_reference():
    """The torch oracle, or None (with the reason) when torch is not installed."""
    try:
        return importlib.import_module("reference"), None
    except ImportError as exc:  # torch missing: finite differences alone
        return None, str(exc)


def run_case(case: Case, ref) -> dict:
    """Check one case; returns a row dict (errors are None where an oracle was not run)."""
    t0 = time.perf_counter()
    ours = case.grads()
    row = {"model": case.model, "arch": case.arch, "dtype": case.dtype}
    if ref is not None:
        theirs = case.torch_grads(ref)
        res = compare_grads(ours, theirs, tol=TOL_TORCH[case.dtype], floor=FLOOR_TORCH, keys=list(theirs))
        row["torch_error"], row["torch_ok"] = res.max_error, res.ok
        if not res.ok:
            row["torch_worst"] = str(res.worst)
    else:
        row["torch_error"], row["torch_ok"] = None, True
    p = case.fd_params()
    numeric = numerical_grad(case.fd_loss, p, eps=FD_EPS)
    res = compare_grads(case.fd_grads(), numeric, tol=TOL_FD, floor=FLOOR_FD, keys=list(numeric))
    row["fd_error"], row["fd_ok"] = res.max_error, res.ok
    if not res.ok:
        row["fd_worst"] = str(res.worst)
    row["ok"] = bool(row["torch_ok"] and row["fd_ok"])
    row["seconds"] = time.perf_counter() - t0
    return row


def run_check(n=8, seed=0, families=None, out=print, as_json=False) -> int:
    """Run the check; print a table (or JSON) via ``out``. Returns the exit status: 0 pass, 1 any failure."""
    ref, why = _load_reference()
    if ref is None and not as_json:
        out(f"torch is not installed ({why}); checking against finite differences only.")
        out("For the torch column: pip install torch (a CPU build is enough), then pip install -e '.[test]'.")
    rng = np.random.default_rng(seed)
    rows = []
    for name in families or FAMILIES:
        for case in FAMILIES[name](rng, n):
            rows.append(run_case(case, ref))
    failed = [r for r in rows if not r["ok"]]
    if as_json:
        out(
            json.dumps(
                {
                    "seed": seed,
                    "n": n,
                    "torch": ref is not None,
                    "rows": rows,
                    "passed": len(rows) - len(failed),
                    "failed": len(failed),
                },
                indent=2,
            )
        )
    else:
        out(format_table(rows, torch=ref is not None))
        for r in failed:
            out(
                f"FAIL {r['model']} {r['arch']} {r['dtype']}: "
                + "; ".join(r[k] for k in ("torch_worst", "fd_worst") if k in r)
            )
        out(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def format_table(rows, torch=True) -> str:
    def fmt(x):
        return "-" if x is None else f"{x:.1e}"

    header = ["model", "architecture", "dtype", "vs torch", "vs finite diff", "result"]
    body = [
        [
            r["model"],
            r["arch"],
            r["dtype"],
            fmt(r["torch_error"]) if torch else "n/a",
            fmt(r["fd_error"]),
            "pass" if r["ok"] else "FAIL",
        ]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
