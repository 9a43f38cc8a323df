"""Long sequences: peak memory and time of full BPTT, checkpointed BPTT ("sqrt", revolve), RTRL and torch.

    python -m benchmarks.long_bptt            # the full run (T = 100 .. 100,000), under 10 minutes
    python -m benchmarks.long_bptt --quick    # T = 100 and 1,000, fewer cases: about a minute
    python -m benchmarks.long_bptt --replot benchmarks/long_bptt.json   # tables and figure, no measuring
    options: --no-plot, --json PATH (the raw results, default benchmarks/long_bptt.json), --plot PATH
    (default docs/long_bptt.png); --quick writes neither unless asked. The figure is
    ``manual_bp.plots.plot_long_bptt`` of the ``--json`` report.

The model: a one-layer RNN (and an LSTM) with D = 16 float inputs, H = 128, K = 16 classes, N = 8
sequences, float64, cross-entropy at every step. Every measurement runs in a fresh process with one thread
(OMP/OPENBLAS/MKL_NUM_THREADS=1, ``torch.set_num_threads(1)``), after a warm-up call on 64 steps:

- time: one call of the gradient (wall clock), reported per step;
- peak memory, two ways: the growth of the process's resident set during the call (VmHWM after the call
  minus VmRSS before it, with the high-water mark reset through /proc/self/clear_refs): the same measure for
  ours and torch's; and for ours the peak of ``tracemalloc`` during a second call (every NumPy array
  counts; the inputs, allocated before, do not).

Methods: ours ``loss_and_grad`` (full BPTT), ``loss_and_grad_checkpointed`` with ``snapshots="sqrt"`` and
revolve budgets s, ``rtrl``; torch's ``nn.RNN``/``nn.LSTM`` + ``nn.Linear`` on the same weights and data, with
one autograd graph over the whole sequence ("torch full") or with ``torch.utils.checkpoint`` around segments
of ceil(sqrt(T)) steps ("torch ckpt": each segment's forward rerun in backward, its first state kept).

RTRL costs O(H^4) a step: its time per step is measured for a few H and the exponent fitted; its memory is
measured against T at H = 8. Revolve's time is fitted to its two counts, the T recorded steps and the
t(T, s) advanced ones (RV3): ``time = a T + b t(T, s)``.

The figures depend on the machine's load: each measurement records ``os.getloadavg()`` before it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
D, H, K, N = 16, 128, 16, 8
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
WORKER_TIMEOUT_S = 240


# ------------------------------------------------------------------------------------------ in the worker
def _proc_status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _model_and_data(spec):
    import numpy as np

    from manual_bp import LSTM, RNN

    cls = {"RNN": RNN, "LSTM": LSTM}[spec["cell"]]
    model = cls(D, spec["H"], K, seed=0)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((spec["T"], N, D))
    Y = rng.integers(0, K, (spec["T"], N))
    return model, X, Y


def _ours(spec, model):
    from manual_bp.long_bptt import loss_and_grad_checkpointed, rtrl

    method = spec["method"]
    if method == "full":
        return lambda X, Y: model.loss_and_grad(X, Y)[0]
    if method == "rtrl":
        return lambda X, Y: rtrl(model, X, Y)[0]
    snapshots = "sqrt" if method == "sqrt" else int(method.split("=")[1])
    return lambda X, Y: loss_and_grad_checkpointed(model, X, Y, snapshots=snapshots)[0]


def _torch(spec, model):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from manual_bp.reference.recurrent import build_recurrent
    from torch.utils.checkpoint import checkpoint

    torch.set_num_threads(1)
    core, head = build_recurrent(model, dtype=np.float64)
    params = [p for p in list(core.parameters()) + list(head.parameters()) if p.requires_grad]
    lstm = spec["cell"] == "LSTM"

    def segment(xs, ys, *state):
        out, hn = core(xs, tuple(state) if lstm else state[0])
        q = head(out)
        E = F.cross_entropy(q.reshape(-1, K), ys.reshape(-1), reduction="sum") / N
        return (E,) + (tuple(hn) if lstm else (hn,))

    def run(X, Y):
        for p in params:
            p.grad = None
        x, y = torch.from_numpy(X), torch.from_numpy(Y.astype(np.int64))
        T = x.shape[0]
        zeros = torch.zeros(1, N, model.hidden_size, dtype=torch.float64)
        state = (zeros, zeros.clone()) if lstm else (zeros,)
        if spec["method"] == "torch full":
            E = segment(x, y, *state)[0]
        else:
            L = math.isqrt(T - 1) + 1 if T > 1 else 1
            E = 0
            for a in range(0, T, L):
                E_seg, *state = checkpoint(segment, x[a : a + L], y[a : a + L], *state, use_reentrant=False)
                E = E + E_seg
        E.backward()
        return float(E)

    return run


def revolve_sweep(spec) -> dict:
    """Revolve at one T for several budgets s in this one process: its time against its count t(T, s) of
    advanced steps. Three rounds over all budgets (so that a burst of other load hits every budget alike),
    the best of the three for each."""
    from manual_bp.long_bptt import loss_and_grad_checkpointed

    model, X, Y = _model_and_data(spec)
    loss_and_grad_checkpointed(model, X[:64], Y[:64], snapshots=3)  # warm-up
    best = {s: math.inf for s in spec["budgets"]}
    for _ in range(3):
        for s in spec["budgets"]:
            t0 = time.perf_counter()
            loss_and_grad_checkpointed(model, X, Y, snapshots=s)
            best[s] = min(best[s], time.perf_counter() - t0)
    return sweep_row(spec, best)


def sweep_row(spec, seconds) -> dict:
    """The revolve sweep's row: for each budget s, its count t(T, s) and ``seconds[s]``."""
    from manual_bp.long_bptt import Schedule

    points = [{"s": s, "forward_steps": Schedule(spec["T"], s).forward_steps, "seconds": seconds[s]}
              for s in spec["budgets"]]
    return {**spec, "points": points}


def worker(spec) -> dict:
    """One measurement (see the module docstring), in this fresh process."""
    import tracemalloc

    if spec["method"] == "revolve sweep":
        return revolve_sweep(spec)
    model, X, Y = _model_and_data(spec)
    fn = _torch(spec, model) if spec["method"].startswith("torch") else _ours(spec, model)
    fn(X[:64], Y[:64])  # warm-up: imports, BLAS and code paths
    before = _proc_status()["VmRSS"]
    reset = _reset_peak_rss()
    t0 = time.perf_counter()
    E = fn(X, Y)
    seconds = time.perf_counter() - t0
    rss_peak = _proc_status()["VmHWM"] - before if reset else None
    traced_peak = None
    if spec.get("trace"):
        tracemalloc.start()
        fn(X, Y)
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return measured_row(spec, E, seconds, rss_peak, traced_peak)


def measured_row(spec, E, seconds, rss_peak, traced_peak=None) -> dict:
    """One measurement's row: the spec, the loss ``E``, the time, the peaks (bytes; None: not measured),
    and for a checkpointed method its schedule's stored states and advanced steps."""
    result = {**spec, "loss": E, "seconds": seconds, "us_per_step": seconds / spec["T"] * 1e6,
              "rss_peak": rss_peak}
    if traced_peak is not None:
        result["traced_peak"] = traced_peak
    if spec["method"] == "sqrt" or spec["method"].startswith("revolve"):
        from manual_bp.long_bptt import Schedule

        sched = Schedule(spec["T"], "sqrt" if spec["method"] == "sqrt" else int(spec["method"].split("=")[1]))
        result["forward_steps"] = sched.forward_steps
        result["stored"] = sched.snapshots
    return result


# ------------------------------------------------------------------------------------------ the driver
def run_one(spec) -> dict:
    load = os.getloadavg()[0]
    cmd = [sys.executable, "-m", "benchmarks.long_bptt", "--worker", json.dumps(spec)]
    env = {**os.environ, **THREAD_ENV}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {WORKER_TIMEOUT_S} s", "load": load}
    if proc.returncode != 0:
        return {**spec, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed",
                "load": load}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "load": load,
            "wall_s": time.perf_counter() - t0}


def plan(quick: bool) -> list:
    """The measurements. tracemalloc's second call where it costs little (T <= 10,000; sqrt; RTRL)."""
    Ts = [100, 1000] if quick else [100, 1000, 10_000, 100_000]
    specs = []
    for T in Ts:
        methods = ["full", "sqrt", "revolve s=10", "revolve s=100", "torch full", "torch ckpt"]
        if T > 10_000:
            methods.remove("revolve s=10")  # about 8 T advanced steps: minutes
        for method in methods:
            trace = not method.startswith("torch") and (T <= 10_000 or method == "sqrt")
            specs.append({"cell": "RNN", "H": H, "T": T, "method": method, "trace": trace})
    for T in [1000] if quick else [100, 1000, 10_000]:  # the LSTM's full caches: 10 GB at T = 100,000
        for method in ["full", "sqrt", "torch full", "torch ckpt"]:
            specs.append({"cell": "LSTM", "H": H, "T": T, "method": method,
                          "trace": method == "sqrt" or (method == "full" and T < 10_000)})
    for h, T in [(8, 20), (16, 20), (32, 10)] if quick else [(8, 40), (16, 40), (32, 20), (64, 8), (128, 3)]:
        specs.append({"cell": "RNN", "H": h, "T": T, "method": "rtrl", "trace": False, "group": "rtrl-H"})
    specs.append({"cell": "RNN", "H": H, "T": 500 if quick else 2000, "method": "revolve sweep",
                  "budgets": [3, 5, 10, 30, 100, 1000], "group": "revolve-sweep"})
    for T in Ts:
        for method in ["rtrl", "full"]:
            specs.append({"cell": "RNN", "H": 8, "T": T, "method": method, "group": "rtrl-T",
                          "trace": method == "rtrl" or T < 100_000})
    return specs


# ------------------------------------------------------------------------------------------ analysis
def _mb(b):
    if b is None:
        return ""
    return f"{b / 2**20:.3g}"


def fit_power(xs, ys) -> float:
    """The slope of log y against log x (least squares)."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def fit_revolve(rows):
    """``seconds = a T + b t(T, s)`` fitted to the revolve runs by least squares on the relative error
    (each run weighs the same); returns a, b and each run's measured/predicted ratio."""
    pts = [(r["T"] / r["seconds"], r["forward_steps"] / r["seconds"]) for r in rows]  # rows of A, rhs 1
    s11 = sum(u * u for u, _ in pts)
    s12 = sum(u * v for u, v in pts)
    s22 = sum(v * v for _, v in pts)
    y1, y2 = sum(u for u, _ in pts), sum(v for _, v in pts)
    det = s11 * s22 - s12 * s12
    a, b = (y1 * s22 - y2 * s12) / det, (s11 * y2 - s12 * y1) / det
    return a, b, [r["seconds"] / (a * r["T"] + b * r["forward_steps"]) for r in rows]


def tables(results) -> str:
    main = [r for r in results if "group" not in r]
    out = []
    for cell in ("RNN", "LSTM"):
        rows = [r for r in main if r["cell"] == cell]
        if not rows:
            continue
        out += [f"### {cell}, H={H}, N={N}, D={D}, K={K}, float64, 1 thread", "",
                "| T | method | stored states | extra forward steps | time / step (us) | time vs full | "
                "peak RSS growth (MB) | tracemalloc peak (MB) | memory vs full | load |",
                "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for T in sorted({r["T"] for r in rows}):
            full = next((r for r in rows if r["T"] == T and r["method"] == "full" and "error" not in r), None)
            for r in [r for r in rows if r["T"] == T]:
                if "error" in r:
                    out.append(f"| {T} | {r['method']} | | | {r['error']} | | | | | {r['load']:.1f} |")
                    continue
                t_rel = f"{r['seconds'] / full['seconds']:.2f}x" if full else ""
                mem = r.get("traced_peak") if not r["method"].startswith("torch") else None
                m_rel = ""
                if full and r is not full:  # the same measure on both sides: tracemalloc, else RSS
                    key = "traced_peak" if mem and full.get("traced_peak") else "rss_peak"
                    if r.get(key) and full.get(key):
                        ratio = full[key] / r[key]
                        m_rel = f"1/{ratio:.0f}" if ratio >= 1 else f"{1 / ratio:.1f}x"
                        m_rel += "" if key == "traced_peak" else " (RSS)"
                extra = r.get("forward_steps", T if r["method"] == "torch ckpt" else 0)  # torch reruns all
                out.append(f"| {T:,} | {r['method']} | {r.get('stored', '')} | {extra} | "
                           f"{r['us_per_step']:.1f} | {t_rel} | {_mb(r['rss_peak'])} | {_mb(mem)} | "
                           f"{m_rel} | {r['load']:.1f} |")
        out.append("")
    return "\n".join(out)


def summary(results) -> str:
    lines = []
    rt_h = [r for r in results if r.get("group") == "rtrl-H" and "error" not in r]
    if len(rt_h) >= 3:
        Hs, us = [r["H"] for r in rt_h], [r["us_per_step"] for r in rt_h]
        lines.append("RTRL time per step against H (RNN, D=16, N=8): " + ", ".join(
            f"H={h}: {u:,.0f} us" for h, u in zip(Hs, us)))
        flops = [2 * N * h * h * (h * (D + h + 1) + h) for h in Hs]  # W M^h_{t-1}: (H, H) @ (H, P + H)
        lines.append(f"fitted exponent over all H: {fit_power(Hs, us):.2f}; over the three largest: "
                     f"{fit_power(Hs[-3:], us[-3:]):.2f}; the flops of W M (2 N H^2 (P + H), "
                     f"P = H (D + H + 1)) "
                     f"grow with exponent {fit_power(Hs[-3:], flops[-3:]):.2f} there (-> 4 as H >> D), at "
                     + ", ".join(f"{f / u / 1e3:.1f}" for f, u in zip(flops, us)) + " GFLOP/s")
    rt_t = [r for r in results if r.get("group") == "rtrl-T" and "error" not in r]
    if rt_t:
        lines.append("RTRL (H=8) against full BPTT (H=8), tracemalloc peak / time per step:")
        for T in sorted({r["T"] for r in rt_t}):
            pair = {r["method"]: r for r in rt_t if r["T"] == T}
            if "rtrl" in pair and "full" in pair:
                rt, fu = pair["rtrl"], pair["full"]
                lines.append(f"  T={T:,}: RTRL {_mb(rt.get('traced_peak')) or '-'} MB "
                             f"(RSS +{_mb(rt['rss_peak'])} MB), "
                             f"{rt['us_per_step']:.0f} us/step; "
                             f"full BPTT {_mb(fu.get('traced_peak')) or '-'} MB "
                             f"(RSS +{_mb(fu['rss_peak'])} MB), {fu['us_per_step']:.0f} us/step")
    rev = [r for r in results if r["method"].startswith("revolve") and "error" not in r and "group" not in r
           and r["T"] >= 1000]
    if len(rev) >= 3:
        a, b, ratios = fit_revolve(rev)
        lines.append(f"revolve (T >= 1000) time = {a * 1e6:.0f} us x T (one-step turns) + {b * 1e6:.1f} us x "
                     f"t(T, s) (advanced steps); measured / fitted: " + ", ".join(
                         f"T={r['T']:,} {r['method']}: {q:.2f}" for r, q in zip(rev, ratios)))
    for r in results:
        if r.get("group") == "revolve-sweep" and "points" in r:
            pts = r["points"]
            xs, ys = [p["forward_steps"] for p in pts], [p["seconds"] for p in pts]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
            a = my - b * mx
            r2 = 1 - sum((y - a - b * x) ** 2 for x, y in zip(xs, ys)) / sum((y - my) ** 2 for y in ys)
            lines.append(f"revolve at T={r['T']:,} in one process: time = {a:.3f} s + {b * 1e6:.1f} us x "
                         f"t(T, s), R^2 = {r2:.4f}; " + ", ".join(
                             f"s={p['s']}: t={p['forward_steps']:,} {p['seconds']:.2f} s "
                             f"(fit {a + b * p['forward_steps']:.2f})" for p in pts))
    losses = {}
    for r in results:
        if "error" not in r and "group" not in r:
            losses.setdefault((r["cell"], r["T"]), []).append(r["loss"])
    worst = max(((max(v) - min(v)) / abs(max(v)) for v in losses.values()), default=0.0)
    lines.append(f"every method's loss agrees with the others' within {worst:.1e} (relative)")
    return "\n".join(lines)


def report(results, seconds=None, quick=False) -> dict:
    """What ``--json`` writes and ``plot`` draws: the rows of ``results`` with the set-up and the machine."""
    return {"task": "long_bptt", "quick": quick, "setup": {"D": D, "H": H, "K": K, "N": N},
            "cpu_count": os.cpu_count(), "seconds": seconds, "load_end": list(os.getloadavg()),
            "results": results}


def plot(report, path):
    """The figure: ``manual_bp.plots.plot_long_bptt`` of a ``report`` (one place for every plot)."""
    from manual_bp.plots import plot_long_bptt

    return plot_long_bptt(report, path)


def load_report(path) -> dict:
    """The report in the ``--json`` file at ``path``, checked (ValueError naming what is wrong)."""
    from manual_bp.plots import check_long_bptt

    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ValueError(f"--replot {path}: no such file (write one with --json PATH)") from None
    except OSError as exc:
        raise ValueError(f"--replot {path}: cannot read it: {exc.strerror}") from None
    try:
        report = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--replot {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    try:
        check_long_bptt(report)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--replot {path}: not a long_bptt --json file: {exc}") from None
    return report


def _check_target(path, flag):
    """ValueError unless ``path`` can be written: a file name (a plot's with its suffix) in a directory."""
    if flag == "--plot":
        from manual_bp.plots import check_format

        check_format(path, flag)
    target = Path(path)
    if str(path) == "" or target.is_dir():
        raise ValueError(f"{flag} {path}: give a file name")
    if not target.resolve().parent.is_dir():
        raise ValueError(f"{flag} {path}: directory {target.parent} does not exist")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.long_bptt", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="T up to 1,000 and fewer cases (about a minute)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--plot", default=None,
                   help="the figure (default: docs/long_bptt.png; --quick: no figure unless given)")
    p.add_argument("--json", default=None,
                   help="the raw results (default: benchmarks/long_bptt.json; --quick: none unless given)")
    p.add_argument("--replot", default=None, metavar="JSON",
                   help="measure nothing: print the tables and draw the figure (--plot, default "
                        "docs/long_bptt.png) from the results a --json run wrote")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    default = not args.quick and not args.replot
    plot_path = None if args.no_plot else (args.plot or (str(ROOT / "docs" / "long_bptt.png")
                                                         if default or args.replot else None))
    json_path = args.json or (str(ROOT / "benchmarks" / "long_bptt.json") if default else None)
    try:  # everything checked before any work: no run of minutes that cannot write its files
        if args.replot and args.json:
            raise ValueError("--json: --replot measures nothing and writes no results")
        if plot_path:
            _check_target(plot_path, "--plot")
        if json_path:
            _check_target(json_path, "--json")
        if plot_path:
            from manual_bp.plots import require_matplotlib

            require_matplotlib()
        rep = load_report(args.replot) if args.replot else None
    except (TypeError, ValueError, RuntimeError) as exc:  # MissingDependency is a RuntimeError: exit 2
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    if rep is None:
        t0 = time.perf_counter()
        results = []
        specs = plan(args.quick)
        for i, spec in enumerate(specs):
            r = run_one(spec)
            results.append(r)
            if "points" in r:
                what = ", ".join(f"s={p['s']}: {p['seconds']:.2f} s" for p in r["points"])
            else:
                what = r.get("error") or f"{r['us_per_step']:.1f} us/step, RSS +{_mb(r['rss_peak'])} MB"
            print(f"[{i + 1}/{len(specs)} {time.perf_counter() - t0:.0f}s] {spec['cell']} H={spec['H']} "
                  f"T={spec['T']:,} {spec['method']}: {what} (load {r['load']:.1f})", file=sys.stderr)
        rep = report(results, time.perf_counter() - t0, args.quick)
    results = rep["results"]
    print(tables(results))
    print(summary(results))
    end = ", ".join(f"{x:.2f}" for x in rep["load_end"]) if rep.get("load_end") else "?"
    took = f"{rep['seconds']:.0f} s" if rep.get("seconds") is not None else "? s"
    print(f"\nwhole run {took}; load average at the end ({end}) on {rep.get('cpu_count', '?')} cores")
    if json_path:
        Path(json_path).write_text(json.dumps(rep, indent=1) + "\n")
        print(f"results: {json_path}")
    if plot_path:
        plot(rep, plot_path)
        print(f"plot: {plot_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
