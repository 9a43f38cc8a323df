"""Entry point: ``python -m benchmarks`` or ``python benchmarks/run.py``.

    python -m benchmarks --suite all              # the full run: benchmarks/results.json and RESULTS.md
    python -m benchmarks --suite mlp --quick         # a fast look (3 rounds), written to out/benchmarks/
    python -m benchmarks --suite rnn --merge         # rerun one suite into an existing results.json

Options: ``--suite mlp|rnn|lstm|gru|userpath|jvp|memory|scaling|all`` (repeatable),
``--policy 1thread|2proc|both``,
``--quick``, ``--out DIR``, ``--case TEXT`` (only the training cases whose name contains TEXT), ``--merge``
(keep the other suites' rows of ``DIR/results.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import machine, report
from benchmarks.harness import ROOT, Settings, WorkerPair

SUITES = ("mlp", "rnn", "gru", "lstm", "userpath", "jvp", "memory", "scaling")
TRAINING = ("mlp", "rnn", "gru", "lstm")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument(
        "--suite",
        action="append",
        choices=SUITES + ("all",),
        help="which suite(s) to run (repeatable; default all)",
    )
    p.add_argument("--policy", choices=("1thread", "2proc", "both"), default="both")
    p.add_argument(
        "--quick", action="store_true", help="3 rounds, tiny warm-up: for development and the tests"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for results.json and RESULTS.md (default: benchmarks/ for a full run of all "
        "suites, out/benchmarks/ otherwise)",
    )
    p.add_argument(
        "--case",
        action="append",
        default=[],
        help="only the training cases whose name contains this text (repeatable), e.g. 'N=10 '",
    )
    p.add_argument("--merge", action="store_true", help="keep rows of suites not run from DIR/results.json")
    p.add_argument("--note", action="append", default=[], help="a line for the Notes section (repeatable)")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=None,
        metavar="LOAD",
        help="before each training-step measurement, wait (up to 300 s) until fewer than LOAD other "
        "processes are runnable on average",
    )
    p.add_argument("--env-note", default="", help="how the thread/BLAS environment was set for this run")
    return p.parse_args(argv)


def _command(argv) -> str:
    """The command line, without the free-text --note/--env-note arguments (they appear in the report)."""
    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--note", "--env-note"):
            skip = True
            continue
        if a.startswith(("--note=", "--env-note=")):
            continue
        kept.append(a)
    return " ".join(["python -m benchmarks"] + kept)


def main(argv=None) -> int:
    args = parse_args(argv)
    suites = list(SUITES) if not args.suite or "all" in args.suite else list(dict.fromkeys(args.suite))
    policies = ["1thread", "2proc"] if args.policy == "both" else [args.policy]
    full = not args.quick and set(suites) == set(SUITES)
    out_dir = args.out or (ROOT / "benchmarks" if full else ROOT / "out" / "benchmarks")
    out_dir.mkdir(parents=True, exist_ok=True)
    st = Settings.make(args.quick)
    st.quiet_below = args.wait_quiet
    info = machine.describe()
    print(
        f"# {info['cpu']}, {info['cores']} cores; numpy {info['numpy']}, torch {info['torch']}; "
        f"load {info['load_average_start']}",
        flush=True,
    )

    rows = []
    worker_threads = None
    need_pair = "2proc" in policies and any(s in TRAINING for s in suites)
    pair = WorkerPair() if need_pair else None
    try:
        if pair is not None:
            worker_info = pair.info()
            worker_threads = {
                "ours": pair.ours.ask(op="threads")["threads"],
                "torch": pair.torch.ask(op="threads")["threads"],
            }
            info["worker_threadpools"] = worker_info
        from benchmarks import suites as S

        for suite in suites:
            print(f"## {suite}", flush=True)
            t0 = time.perf_counter()
            if suite in TRAINING:
                rows += S.run_training(suite, st, policies, pair, only=args.case)
                if suite == "mlp":
                    rows += S.run_gemm_peak(st, policies, ("float32", "float64"), pair)
            elif suite == "userpath":
                from benchmarks.user_path import run_userpath

                rows += run_userpath(st)
            elif suite == "jvp":
                rows += S.run_jvp(st)
            elif suite == "memory":
                rows += S.run_memory(st)
            elif suite == "scaling":
                rows += S.run_scaling(st)
            print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
    finally:
        if pair is not None:
            pair.__exit__(None, None, None)

    results_path = out_dir / "results.json"
    if args.merge and results_path.exists():
        old = json.loads(results_path.read_text())
        ran = set(suites) | ({"peak"} if "mlp" in suites else set())
        rows = [r for r in old["rows"] if r["suite"] not in ran] + rows
        order = {s: i for i, s in enumerate(("mlp", "peak") + SUITES[1:])}
        rows.sort(key=lambda r: order.get(r["suite"], 99))
        worker_threads = worker_threads or old.get("worker_threads")
    results = {
        "command": _command(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "settings": vars(st),
        "policies": policies,
        "machine": info,
        "worker_threads": worker_threads,
        "load_average_end": machine.load_average(),
        "env_note": args.env_note,
        "notes": args.note,
        "rows": rows,
    }
    results_path.write_text(json.dumps(results, indent=1, default=str))
    (out_dir / "RESULTS.md").write_text(report.render(results))
    print(f"wrote {results_path} and {out_dir / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
