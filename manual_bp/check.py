"""``manual-bp check``: draw seeded random models and check their gradients against two oracles.

For each case the table shows the max relative error (norm-wise per parameter, ``gradcheck.rel_error``) of
our hand-derived gradients against

- torch autograd through torch's own modules (``manual_bp.reference``), computing in float64 for either dtype
  of model, and
- central finite differences of our own loss, always in float64 (a float32 model is checked through a
  float64 copy of itself: finite differences in float32 are too coarse to mean anything).

The cases, the tolerances and the oracle come from ``manual_bp.harness``, the same generators the test suite
draws from; this module only runs them and prints the table.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from . import harness
from .gradcheck import compare_grads


def _recurrent_family(kind):
    return lambda pick: harness.recurrent_problem(pick, models=(kind,))


CELLS = ("RNN", "LSTM", "GRU")
SECOND_ORDER = ("mlp",) + CELLS

#: table order: family name -> ``problem(pick)``
FAMILIES = {
    "mlp": harness.mlp_problem,
    "logreg": harness.logreg_problem,
    "rnn": _recurrent_family("RNN"),
    "lstm": _recurrent_family("LSTM"),
    "gru": _recurrent_family("GRU"),
    # torch's options: layers, bidirectional, projected (LSTM), padded (lengths), batch-first, bias=False
    "stacked": lambda pick: harness.recurrent_problem(pick, stacked=True),
    # exact Hessian-vector products (R-operator): torch's double backward, differences of our gradient
    "hvp": lambda pick: harness.second_order_problem(pick, pick.choice(SECOND_ORDER, "family", sweep=True)),
    # checkpointed BPTT (sqrt and revolve) and RTRL: the full-BPTT gradient by other routes
    "snapshots": lambda pick: harness.long_bptt_problem(pick, pick.choice(CELLS, "family", sweep=True)),
    "rtrl": lambda pick: harness.long_bptt_problem(pick, pick.choice(CELLS, "family", sweep=True), "rtrl"),
    # model.trace: every intermediate of a pass (z, a, delta; states, gates, dE/dh_t, gate deltas) against
    # retain_grad on torch's modules, and its gradient against finite differences
    "trace": lambda pick: harness.trace_problem(pick, pick.choice(("mlp",) + CELLS, "family", sweep=True)),
}
#: how many cases a family draws, per ``n`` (logistic regression has little to vary)
SHARE = {"logreg": 0.25}


def draw_cases(name, rng, n) -> list:
    """``n`` problems of one family (fewer for logistic regression), off relu's kink."""
    out = []
    for i in range(max(1, int(n * SHARE.get(name, 1)))):
        for _ in range(20):  # redraw a case whose relu sits within the margin of the kink
            problem = FAMILIES[name](harness.RngPick(rng, index=i))
            if harness.off_kink(problem):
                break
        out.append(problem)
    return out


def run_case(name, problem, ref) -> dict:
    """Check one problem; returns a row dict (errors are None where an oracle was not run)."""
    t0 = time.perf_counter()
    m = problem.model
    row = {"model": "logreg" if name == "logreg" else type(m).__name__, "arch": problem.describe(),
           "dtype": m.dtype.name}
    if ref is not None:
        tol = harness.allowance(m.dtype)
        ours, theirs = harness.quantity_of(problem), harness.torch_quantity(ref, problem)
        res = compare_grads(ours, theirs, tol=tol.torch, floor=tol.torch_floor, keys=list(theirs))
        row["torch_error"], row["torch_ok"] = res.max_error, res.ok
        if not res.ok:
            row["torch_worst"] = str(res.worst)
    else:
        row["torch_error"], row["torch_ok"] = None, True
    res = harness.fd_check(problem)
    row["fd_error"], row["fd_ok"] = res.max_error, res.ok
    if not res.ok:
        row["fd_worst"] = str(res.worst)
    row["ok"] = bool(row["torch_ok"] and row["fd_ok"])
    row["seconds"] = time.perf_counter() - t0
    return row


def _say(line):
    print(line, file=sys.stderr)


def run_check(n=8, seed=0, families=None, out=print, as_json=False, warn=_say, progress=None) -> int:
    """Run the check; print a table (or JSON) via ``out``. Returns the exit status: 0 pass, 1 any failure.

    ``warn`` takes the notes that are not results (torch missing); ``progress`` is None or an object with
    ``start(epoch, epochs, total)``, ``update(done, loss)`` and ``end(record)`` (``fit``'s protocol: the
    command line passes a tqdm bar), told about each case as it is checked.
    """
    ref, why = harness.oracle()
    if ref is None:
        warn(f"torch is not installed ({why}); checking against finite differences only.")
        warn("For the torch column: pip install torch (a CPU build is enough), then "
             "pip install -e '.[test]'.")
    rng = np.random.default_rng(seed)
    drawn = [(name, problem) for name in families or FAMILIES for problem in draw_cases(name, rng, n)]
    if progress is not None:
        progress.start(1, 1, len(drawn))
    rows = []
    for i, (name, problem) in enumerate(drawn):
        rows.append(run_case(name, problem, ref))
        if progress is not None:
            progress.update(i + 1, None)
    if progress is not None:
        progress.end({"epoch": 1})
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
