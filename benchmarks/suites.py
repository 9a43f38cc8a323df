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

from .cases import case_name, check_equal_work, make_data, make_model, mlp_flops, recurrent_flops
from .harness import (
    ROOT,
    OneThread,
    compare_1thread,
    compare_fns,
    external_load,
    gemm_fn,
    time_block,
    wait_quiet,
    warm_up,
)

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

#: the largest MLP's GFLOP/s is compared with the GEMM peak (target >= 85 %): of its own product shape
#: (N, n_in) @ (n_in, n_out) = (256, 1024) @ (1024, 1024), and of the square 1024 product
PEAK_SHAPES = {"case": (256, 1024, 1024), "square": (1024, 1024, 1024)}
PEAK_TARGET = 0.85
PEAK_CASE_SIZES = [1024, 1024, 1024, 1024]


def _step_vs_gemm(spec, flops, policy, st, pair):
    """Our step's GFLOP/s as a fraction of numpy's GEMM of the case's shape, timed in the same rounds.

    Each round times our step and the GEMM back to back (1thread: in this process; 2proc: two "ours" worker
    processes, alternating), so the fraction is immune to the machine's speed drifting between two
    measurements.
    """
    from .cases import make_side

    shape = PEAK_SHAPES["case"]
    gemm_flops = 2.0 * shape[0] * shape[1] * shape[2]
    if policy == "1thread":
        with OneThread():
            res = compare_fns(make_side(spec, "ours").step, gemm_fn("numpy", shape, spec["dtype"]), st)
    else:
        res = pair.compare(
            {"op": "build", "spec": spec},
            st,
            build_b={"op": "gemm", "shape": list(shape), "dtype": spec["dtype"]},
            b=pair.ours2,
        )
    fractions = [(flops / a) / (gemm_flops / g) for a, g in zip(res["ours_samples"], res["torch_samples"])]
    return {
        "fraction_of_gemm": statistics.median(fractions),
        "fraction_min": min(fractions),
        "fraction_max": max(fractions),
        "gemm_gflops": gemm_flops / res["torch_s"] / 1e9,
        "ours_gflops": flops / res["ours_s"] / 1e9,
        "rounds": len(fractions),
    }


def _flops(spec):
    return mlp_flops(spec) if spec["kind"] == "mlp" else recurrent_flops(spec)


def run_training(suite, st, policies, pair=None, log=print, only=()) -> list:
    rows = []
    for spec, target in TRAINING_SUITES[suite]:
        name = case_name(spec)
        if only and not any(text in name for text in only):
            continue
        row = {"suite": suite, "name": name, "spec": spec, "target": target, "flops": _flops(spec)}
        with OneThread():
            row["check"] = check_equal_work(spec)
        if not row["check"]["ok"]:
            row["skipped"] = "the two sides computed different gradients: not timed"
            log(f"  {name}: CHECK FAILED {row['check']}")
            rows.append(row)
            continue
        for policy in policies:
            load_before = wait_quiet(st)
            if policy == "1thread":
                res = compare_1thread(spec, st)
            else:
                res = pair.compare({"op": "build", "spec": spec}, st)
            res["external_load"] = [load_before, external_load()]
            res["ours_gflops"] = row["flops"] / res["ours_s"] / 1e9
            res["torch_gflops"] = row["flops"] / res["torch_s"] / 1e9
            row[policy] = res
            if spec["kind"] == "mlp" and spec["sizes"] == PEAK_CASE_SIZES:
                row[f"{policy}_vs_gemm"] = _step_vs_gemm(spec, row["flops"], policy, st, pair)
            log(
                f"  {name} [{policy}]: ours {res['ours_s'] * 1e3:.3f} ms, "
                f"torch {res['torch_s'] * 1e3:.3f} ms, "
                f"ratio {res['ratio']:.3f} (target <= {target})"
            )
        rows.append(row)
    return rows


def run_gemm_peak(st, policies, dtypes, pair=None, log=print) -> list:
    """GFLOP/s of numpy's and torch's GEMM under each policy: the peak the largest MLP is held to."""
    rows = []
    for dtype in dtypes:
        for which, shape in PEAK_SHAPES.items():
            m, k, n = shape
            flops = 2.0 * m * k * n
            row = {
                "suite": "peak",
                "name": f"GEMM ({m}, {k}) @ ({k}, {n}) {dtype}",
                "dtype": dtype,
                "which": which,
                "shape": list(shape),
            }
            for policy in policies:
                wait_quiet(st)
                if policy == "1thread":
                    with OneThread():
                        res = compare_fns(gemm_fn("numpy", shape, dtype), gemm_fn("torch", shape, dtype), st)
                else:
                    res = pair.compare({"op": "gemm", "shape": list(shape), "dtype": dtype}, st)
                res["numpy_gflops"] = flops / res["ours_s"] / 1e9
                res["torch_gflops"] = flops / res["torch_s"] / 1e9
                res["peak_gflops"] = max(res["numpy_gflops"], res["torch_gflops"])
                row[policy] = res
                log(
                    f"  {row['name']} [{policy}]: numpy {res['numpy_gflops']:.1f} GF/s, "
                    f"torch {res['torch_gflops']:.1f} GF/s"
                )
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
            model = make_model(spec)
            X, Y = make_data(spec)
            P = sum(v.size for v in model.params.values())
            _, g_rev = model.loss_and_grad(X, Y)
            g_fwd = _basis_gradient(model, X, Y)
            err = max(
                float(np.abs(g_fwd[k] - g_rev[k]).max() / max(np.abs(g_rev[k]).max(), 1e-300))
                for k in g_rev
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
            log(
                f"  {name}: P={P}, forward {row['forward_s'] * 1e3:.1f} ms, "
                f"reverse {row['reverse_s'] * 1e6:.0f} us, "
                f"ratio {row['ratio']:.0f}, agree to {err:.1e}"
            )
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
    hwm = None
    try:
        with open("/proc/self/status") as f:
            hwm = next((int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")), None)
    except OSError:
        pass
    print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "vmhwm_kb": hwm}))
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


def _fresh(script, *args) -> dict:
    """Run ``script`` in a fresh Python; return the JSON of its last line.

    Linux carries a process's peak RSS across exec (``ru_maxrss`` of a child exec'd straight from this large
    process starts at this process's peak), so the child is forked by a small shell, not by us.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = ["/bin/sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-c", script, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_rss_mb(*args) -> float:
    r = _fresh(_RSS_SCRIPT, *args)
    return r["maxrss_kb"] / 1024


MEMORY_CASES = [
    {"kind": "mlp", "sizes": [784, 30, 10], "N": 10, "dtype": "float64"},
    {"kind": "mlp", "sizes": [784, 256, 256, 10], "N": 128, "dtype": "float64"},
    _rec("rnn", 25, 128, "float64"),
    _rec("lstm", 50, 256, "float32"),
]


def run_memory(st, log=print) -> list:
    reps = 3 if not st.quick else 1
    rows = []
    base = {w: statistics.median(_peak_rss_mb(w) for _ in range(reps)) for w in ("numpy", "torch-import")}
    rows.append(
        {
            "suite": "memory",
            "name": "import only",
            "kind": "baseline",
            "numpy_mb": base["numpy"],
            "torch_mb": base["torch-import"],
        }
    )
    log(f"  import only: numpy {base['numpy']:.0f} MB, numpy+torch {base['torch-import']:.0f} MB")
    for spec in MEMORY_CASES:
        name = case_name(spec)
        arg = json.dumps(spec)
        ours = statistics.median(_peak_rss_mb("ours", arg) for _ in range(reps))
        theirs = statistics.median(_peak_rss_mb("torch", arg) for _ in range(reps))
        rows.append(
            {
                "suite": "memory",
                "name": name,
                "kind": "rss",
                "ours_mb": ours,
                "torch_mb": theirs,
                "ratio": ours / theirs,
                "target": 0.5,
            }
        )
        log(f"  {name}: peak RSS ours {ours:.0f} MB, torch {theirs:.0f} MB, ratio {ours / theirs:.2f}")
    reps_i = 7 if not st.quick else 2
    numpy_s, mbp_s, torch_s = [], [], []
    for _ in range(reps_i):
        r = _fresh(_IMPORT_SCRIPT, "manual_bp")
        numpy_s.append(r["numpy_s"])
        mbp_s.append(r["then_s"])
        torch_s.append(_fresh(_IMPORT_SCRIPT, "torch")["then_s"])
    row = {
        "suite": "memory",
        "name": "import time",
        "kind": "import",
        "numpy_s": statistics.median(numpy_s),
        "manual_bp_after_numpy_s": statistics.median(mbp_s),
        "torch_after_numpy_s": statistics.median(torch_s),
        "reps": reps_i,
    }
    rows.append(row)
    log(
        f"  import numpy {row['numpy_s'] * 1e3:.0f} ms, "
        f"then manual_bp +{row['manual_bp_after_numpy_s'] * 1e3:.1f} ms,"
        f" (torch +{row['torch_after_numpy_s'] * 1e3:.0f} ms)"
    )
    return rows


# ---------------------------------------------------------------------------------------------- scaling
SCALING_T = (10, 25, 50, 100, 200)
SCALING_N = (1, 8, 32, 128, 512)


def _ours_backward_bytes(spec) -> dict:
    """What our recurrent model holds for backward, and what one loss_and_grad allocates at its peak.

    ``held``: the distinct arrays of the forward cache (``Recurrent._forward``; the caller's X excluded) plus
    the logits, which the loss's delta needs. ``peak``: tracemalloc's peak over a new model's first
    ``loss_and_grad`` (NumPy reports its allocations to tracemalloc): cache, backward temporaries and the
    gradients together.
    """
    import tracemalloc

    model = make_model(spec)
    X, Y = make_data(spec)
    X = X.astype(model.dtype)
    Xc, is_ids, _, state0, _ = model._check_all(X, Y, None, None)
    cache = model._forward(Xc, is_ids, state0)
    seen = {}
    per_step = [v for k, v in cache.items() if k != "WT"]  # WT: a copy of W^T for the loop, not per step
    for v in per_step + [model._logits(cache)]:
        if isinstance(v, np.ndarray) and not np.shares_memory(v, Xc):
            base = v if v.base is None else v.base
            seen[id(base)] = base.nbytes
    held = sum(seen.values())
    del cache
    fresh = make_model(spec)  # its first call: loss_and_grad's buffer pool (recurrent._buffers) starts empty
    tracemalloc.start()
    base_mem = tracemalloc.get_traced_memory()[0]
    fresh.loss_and_grad(X, Y)
    peak = tracemalloc.get_traced_memory()[1] - base_mem
    tracemalloc.stop()
    return {"held": held, "peak": peak}


def _torch_saved_bytes(spec) -> int:
    """Bytes of the tensors autograd saves for backward (distinct storages, the input X and the parameters
    excluded), through saved_tensors_hooks."""
    import torch

    from .cases import make_side

    side = make_side(spec, "torch")
    skip = {side.X.untyped_storage().data_ptr()} | {p.untyped_storage().data_ptr() for p in side.parameters}
    skip |= {p.untyped_storage().data_ptr() for p in side.cell.parameters()}
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = side._loss()
    del loss
    return sum(seen.values())


def run_scaling(st, log=print) -> list:
    rows = []
    Ts = SCALING_T if not st.quick else SCALING_T[:2]
    Ns = SCALING_N if not st.quick else SCALING_N[:2]
    for T in Ts:
        spec = _rec("rnn", T, 128, "float64")
        res = compare_1thread(spec, st)
        rows.append(
            {
                "suite": "scaling",
                "axis": "T",
                "name": case_name(spec),
                "x": T,
                "ours_s": res["ours_s"],
                "torch_s": res["torch_s"],
                "ratio": res["ratio"],
            }
        )
        log(
            f"  time vs T: {case_name(spec)}: ours {res['ours_s'] * 1e3:.2f} ms, "
            f"torch {res['torch_s'] * 1e3:.2f} ms"
        )
    for kind in ("rnn", "lstm"):
        for T in Ts:
            spec = _rec(kind, T, 128, "float64")
            ours_b = _ours_backward_bytes(spec)
            torch_b = _torch_saved_bytes(spec)
            rows.append(
                {
                    "suite": "scaling",
                    "axis": "memory-T",
                    "name": case_name(spec),
                    "x": T,
                    "ours_bytes": ours_b["held"],
                    "ours_peak_bytes": ours_b["peak"],
                    "torch_saved_bytes": torch_b,
                }
            )
            log(
                f"  memory vs T: {case_name(spec)}: ours holds {ours_b['held'] / 2**20:.2f} MiB "
                f"(peak {ours_b['peak'] / 2**20:.2f}), torch saves {torch_b / 2**20:.2f} MiB"
            )
    else:
        rows.append({"suite": "scaling", "axis": "T", "name": "RNN", "skipped": "manual_bp has no RNN yet"})
    for N in Ns:
        spec = {"kind": "mlp", "sizes": [784, 256, 256, 10], "N": N, "dtype": "float64"}
        res = compare_1thread(spec, st)
        rows.append(
            {
                "suite": "scaling",
                "axis": "N",
                "name": case_name(spec),
                "x": N,
                "ours_s": res["ours_s"],
                "torch_s": res["torch_s"],
                "ratio": res["ratio"],
            }
        )
        log(
            f"  time vs N: {case_name(spec)}: ours {res['ours_s'] * 1e3:.2f} ms, "
            f"torch {res['torch_s'] * 1e3:.2f} ms"
        )
    return rows
