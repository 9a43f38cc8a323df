"""The suites: training-step cases (mlp, rnn, gru, lstm), GEMM peak, jvp, memory, scaling.

Each ``run_*`` returns a list of JSON-able result rows; ``report.py`` turns them into tables.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap

import numpy as np

from .cases import available, case_name, check_equal_work, make_data, make_model, mlp_flops, recurrent_flops
from .harness import ROOT, OneThread, compare_1thread, compare_fns, gemm_fn, time_block, warm_up

# ---------------------------------------------------------------------------------------------- cases
MLP_CASES = [
    ({"kind": "mlp", "sizes": [784, 30, 10], "N": 10, "dtype": "float64"}, 0.25),
    ({"kind": "mlp", "sizes": [784, 256, 256, 10], "N": 128, "dtype": "float64"}, 0.8),
    ({"kind": "mlp", "sizes": [1024, 1024, 1024, 1024], "N": 256, "dtype": "float32"}, 1.0),
    ({"kind": "mlp", "sizes": [1024, 1024, 1024, 1024], "N": 256, "dtype": "float64"}, 1.0),
]


def _rec(kind, T, H, dtype):
    return {"kind": kind, "T": T, "N": 32, "D": 65, "H": H, "K": 65, "dtype": dtype}


RNN_CASES = [(_rec("rnn", T, H, "float64"), 0.8) for T in (25, 100) for H in (128, 512)]
GRU_CASES = [(_rec("gru", 50, 256, dt), 0.9) for dt in ("float64", "float32")]
LSTM_CASES = [(_rec("lstm", 50, 256, "float64"), 0.9), (_rec("lstm", 50, 256, "float32"), 1.0)]
TRAINING_SUITES = {"mlp": MLP_CASES, "rnn": RNN_CASES, "gru": GRU_CASES, "lstm": LSTM_CASES}

#: the largest MLP: its GFLOP/s is compared with the GEMM peak (target >= 85 %)
PEAK_GEMM_N = 1024
PEAK_TARGET = 0.85


def _flops(spec):
    return mlp_flops(spec) if spec["kind"] == "mlp" else recurrent_flops(spec)


def run_training(suite, st, policies, pair=None, log=print, only=()) -> list:
    rows = []
    for spec, target in TRAINING_SUITES[suite]:
        name = case_name(spec)
        if only and not any(text in name for text in only):
            continue
        row = {"suite": suite, "name": name, "spec": spec, "target": target, "flops": _flops(spec)}
        if not available(spec):
            row["skipped"] = f"manual_bp has no {spec['kind'].upper()} yet"
            log(f"  {name}: skipped ({row['skipped']})")
            rows.append(row)
            continue
        with OneThread():
            row["check"] = check_equal_work(spec)
        if not row["check"]["ok"]:
            row["skipped"] = "the two sides computed different gradients: not timed"
            log(f"  {name}: CHECK FAILED {row['check']}")
            rows.append(row)
            continue
        for policy in policies:
            if policy == "1thread":
                res = compare_1thread(spec, st)
            else:
                res = pair.compare({"op": "build", "spec": spec}, st)
            res["ours_gflops"] = row["flops"] / res["ours_s"] / 1e9
            res["torch_gflops"] = row["flops"] / res["torch_s"] / 1e9
            row[policy] = res
            log(
                f"  {name} [{policy}]: ours {res['ours_s'] * 1e3:.3f} ms, torch {res['torch_s'] * 1e3:.3f} ms, "
                f"ratio {res['ratio']:.3f} (target <= {target})"
            )
        rows.append(row)
    return rows


def run_gemm_peak(st, policies, dtypes, pair=None, log=print) -> list:
    """GFLOP/s of an n x n GEMM, numpy's and torch's, under each policy: the peak the MLPs are held to."""
    rows = []
    n = PEAK_GEMM_N
    flops = 2.0 * n**3
    for dtype in dtypes:
        row = {"suite": "peak", "name": f"GEMM {n}x{n} {dtype}", "dtype": dtype, "n": n}
        for policy in policies:
            if policy == "1thread":
                with OneThread():
                    res = compare_fns(gemm_fn("numpy", n, dtype), gemm_fn("torch", n, dtype), st)
            else:
                res = pair.compare({"op": "gemm", "n": n, "dtype": dtype}, st)
            res["numpy_gflops"] = flops / res["ours_s"] / 1e9
            res["torch_gflops"] = flops / res["torch_s"] / 1e9
            res["peak_gflops"] = max(res["numpy_gflops"], res["torch_gflops"])
            row[policy] = res
            log(f"  {row['name']} [{policy}]: numpy {res['numpy_gflops']:.1f} GF/s, torch {res['torch_gflops']:.1f} GF/s")
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- jvp
def _basis_gradient(model, X, Y):
    """The full gradient by one JVP per parameter entry (a one-hot tangent each): P forward passes."""
    tangents = {k: np.zeros_like(v) for k, v in model.params.items()}
    grads = {}
    for k, v in model.params.items():
        g = np.empty(v.size)
        flat = tangents[k].reshape(-1)
        for i in range(v.size):
            flat[i] = 1.0
            g[i] = model.jvp(X, Y, tangents)[1]
            flat[i] = 0.0
        grads[k] = g.reshape(v.shape)
    return grads


JVP_MLP = [[8, h, 4] for h in (2, 8, 32, 96)]
JVP_RNN = [(5, h, 5) for h in (2, 6, 12, 24)]


def run_jvp(st, log=print) -> list:
    """Forward mode (P JVPs) against reverse mode (one loss_and_grad) for the full gradient; 1 thread."""
    rows = []
    models = []
    n = 2 if st.quick else None
    for sizes in JVP_MLP[:n]:
        spec = {"kind": "mlp", "sizes": sizes, "N": 16, "dtype": "float64"}
        models.append(("MLP", f"MLP {sizes} N=16", spec))
    for D, H, K in JVP_RNN[:n]:
        spec = {"kind": "rnn", "T": 10, "N": 4, "D": D, "H": H, "K": K, "dtype": "float64"}
        models.append(("RNN", f"RNN D={D} H={H} K={K} T=10 N=4", spec))
    with OneThread():
        for family, name, spec in models:
            if not available(spec):
                rows.append({"suite": "jvp", "name": name, "skipped": "model class not available yet"})
                continue
            model = make_model(spec)
            X, Y = make_data(spec)
            P = sum(v.size for v in model.params.values())
            _, g_rev = model.loss_and_grad(X, Y)
            g_fwd = _basis_gradient(model, X, Y)
            err = max(
                float(np.abs(g_fwd[k] - g_rev[k]).max() / max(np.abs(g_rev[k]).max(), 1e-300)) for k in g_rev
                if k in model.params
            )
            def reverse(model=model, X=X, Y=Y):
                return model.loss_and_grad(X, Y)

            def forward(model=model, X=X, Y=Y):
                return _basis_gradient(model, X, Y)

            rev_inner = warm_up(reverse, st.warmup_s, st.block_s)
            rounds = max(3, st.rounds if P < 1000 else 3)
            t_rev, t_fwd = [], []
            for _ in range(rounds):
                t_rev.append(time_block(reverse, rev_inner))
                t_fwd.append(time_block(forward, 1))
            ratios = [f / r for f, r in zip(t_fwd, t_rev)]
            row = {
                "suite": "jvp",
                "family": family,
                "name": name,
                "P": P,
                "max_rel_err_fwd_vs_rev": err,
                "reverse_s": statistics.median(t_rev),
                "forward_s": statistics.median(t_fwd),
                "ratio": statistics.median(ratios),
                "ratio_per_P": statistics.median(ratios) / P,
                "rounds": rounds,
            }
            log(f"  {name}: P={P}, forward {row['forward_s'] * 1e3:.1f} ms, reverse {row['reverse_s'] * 1e6:.0f} us, "
                f"ratio {row['ratio']:.0f}, agree to {err:.1e}")
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- memory
_RSS_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    what = sys.argv[1]
    spec = json.loads(sys.argv[2]) if len(sys.argv) > 2 else None
    if what == "numpy":
        import numpy
    elif what == "torch-import":
        import numpy, torch
    elif what in ("ours", "torch"):
        from benchmarks.cases import make_side
        make_side(spec, what).step()
    print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    """
)

_IMPORT_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import numpy
    t1 = time.perf_counter()
    mod = sys.argv[1]
    if mod == "manual_bp":
        import manual_bp
    elif mod == "torch":
        import torch
    t2 = time.perf_counter()
    print(json.dumps({"numpy_s": t1 - t0, "then_s": t2 - t1}))
    """
)


def _fresh(script, *args, threads_env=None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=str(ROOT), env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


MEMORY_CASES = [
    {"kind": "mlp", "sizes": [784, 30, 10], "N": 10, "dtype": "float64"},
    {"kind": "mlp", "sizes": [784, 256, 256, 10], "N": 128, "dtype": "float64"},
    _rec("rnn", 25, 128, "float64"),
    _rec("lstm", 50, 256, "float32"),
]


def run_memory(st, log=print) -> list:
    reps = 3 if not st.quick else 1
    rows = []
    base = {w: statistics.median(_fresh(_RSS_SCRIPT, w)["maxrss_kb"] for _ in range(reps)) for w in
            ("numpy", "torch-import")}
    rows.append({"suite": "memory", "name": "import only", "kind": "baseline",
                 "numpy_mb": base["numpy"] / 1024, "torch_mb": base["torch-import"] / 1024})
    log(f"  import only: numpy {base['numpy'] / 1024:.0f} MB, numpy+torch {base['torch-import'] / 1024:.0f} MB")
    for spec in MEMORY_CASES:
        name = case_name(spec)
        if not available(spec):
            rows.append({"suite": "memory", "name": name, "kind": "rss", "skipped": "model class not available yet"})
            continue
        arg = json.dumps(spec)
        ours = statistics.median(_fresh(_RSS_SCRIPT, "ours", arg)["maxrss_kb"] for _ in range(reps)) / 1024
        theirs = statistics.median(_fresh(_RSS_SCRIPT, "torch", arg)["maxrss_kb"] for _ in range(reps)) / 1024
        rows.append({"suite": "memory", "name": name, "kind": "rss", "ours_mb": ours, "torch_mb": theirs,
                     "ratio": ours / theirs, "target": 0.5})
        log(f"  {name}: peak RSS ours {ours:.0f} MB, torch {theirs:.0f} MB, ratio {ours / theirs:.2f}")
    reps_i = 7 if not st.quick else 2
    numpy_s, mbp_s, torch_s = [], [], []
    for _ in range(reps_i):
        r = _fresh(_IMPORT_SCRIPT, "manual_bp")
        numpy_s.append(r["numpy_s"])
        mbp_s.append(r["then_s"])
        torch_s.append(_fresh(_IMPORT_SCRIPT, "torch")["then_s"])
    row = {"suite": "memory", "name": "import time", "kind": "import",
           "numpy_s": statistics.median(numpy_s), "manual_bp_after_numpy_s": statistics.median(mbp_s),
           "torch_after_numpy_s": statistics.median(torch_s), "reps": reps_i}
    rows.append(row)
    log(f"  import numpy {row['numpy_s'] * 1e3:.0f} ms, then manual_bp +{row['manual_bp_after_numpy_s'] * 1e3:.1f} ms,"
        f" (torch +{row['torch_after_numpy_s'] * 1e3:.0f} ms)")
    return rows


# ---------------------------------------------------------------------------------------------- scaling
SCALING_T = (10, 25, 50, 100, 200)
SCALING_N = (1, 8, 32, 128, 512)


def _ours_backward_bytes(spec) -> int:
    """Peak bytes NumPy allocates during one loss_and_grad (tracemalloc sees NumPy's allocations)."""
    import tracemalloc

    model = make_model(spec)
    X, Y = make_data(spec)
    X = X.astype(model.dtype)
    model.loss_and_grad(X, Y)
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    model.loss_and_grad(X, Y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


def _torch_saved_bytes(spec) -> int:
    """Bytes of the tensors autograd saves for backward (distinct storages), through saved_tensors_hooks."""
    import torch

    from .cases import make_side

    side = make_side(spec, "torch")
    seen = {}

    def pack(t):
        try:
            key = t.untyped_storage().data_ptr()
            seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
        except Exception:  # noqa: BLE001 - a tensor without storage counts nothing
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = side._loss()
    del loss
    return sum(seen.values())


def run_scaling(st, log=print) -> list:
    rows = []
    Ts = SCALING_T if not st.quick else SCALING_T[:2]
    Ns = SCALING_N if not st.quick else SCALING_N[:2]
    if available(_rec("rnn", 10, 128, "float64")):
        for T in Ts:
            spec = _rec("rnn", T, 128, "float64")
            res = compare_1thread(spec, st)
            rows.append({"suite": "scaling", "axis": "T", "name": case_name(spec), "x": T,
                         "ours_s": res["ours_s"], "torch_s": res["torch_s"], "ratio": res["ratio"]})
            log(f"  time vs T: {case_name(spec)}: ours {res['ours_s'] * 1e3:.2f} ms, torch {res['torch_s'] * 1e3:.2f} ms")
        for kind in ("rnn", "lstm"):
            for T in Ts:
                spec = _rec(kind, T, 128, "float64")
                if not available(spec):
                    continue
                ours_b = _ours_backward_bytes(spec)
                torch_b = _torch_saved_bytes(spec)
                rows.append({"suite": "scaling", "axis": "memory-T", "name": case_name(spec), "x": T,
                             "ours_bytes": ours_b, "torch_saved_bytes": torch_b})
                log(f"  memory vs T: {case_name(spec)}: ours peak {ours_b / 2**20:.1f} MiB, "
                    f"torch saved {torch_b / 2**20:.1f} MiB")
    else:
        rows.append({"suite": "scaling", "axis": "T", "name": "RNN", "skipped": "manual_bp has no RNN yet"})
    for N in Ns:
        spec = {"kind": "mlp", "sizes": [784, 256, 256, 10], "N": N, "dtype": "float64"}
        res = compare_1thread(spec, st)
        rows.append({"suite": "scaling", "axis": "N", "name": case_name(spec), "x": N,
                     "ours_s": res["ours_s"], "torch_s": res["torch_s"], "ratio": res["ratio"]})
        log(f"  time vs N: {case_name(spec)}: ours {res['ours_s'] * 1e3:.2f} ms, torch {res['torch_s'] * 1e3:.2f} ms")
    return rows
