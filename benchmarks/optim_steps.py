"""Optimizer steps against the bare update and torch.optim: ``python -m benchmarks.optim_steps``.

    python -m benchmarks.optim_steps                      # 21 rounds, markdown table on stdout
    python -m benchmarks.optim_steps --repeat 41 --json out/optim_steps.json

The arrays: the parameters of the ``[784, 256, 256, 10]`` MLP (W1 256x784, b1, W2 256x256, b2, W3 10x256,
b3; 269,322 numbers) in float64 and in float32, with one fixed gradient dict of normal entries.

Timed, on equal copies of those arrays, one thread each (``harness.OneThread``: threadpoolctl limits every
BLAS/OpenMP pool of this process to one thread and ``torch.set_num_threads(1)``):

- ``bare``: ``p -= lr * g`` for every array, the least an SGD step can cost;
- ours: ``manual_bp.optim`` SGD (plain, momentum 0.9, Nesterov 0.9, weight decay 1e-4), Adam, AdamW, each a
  full ``step(grads)`` (checks of keys, shapes, dtypes and finiteness included);
- torch: ``torch.optim`` with the same hyper-parameters and torch's defaults otherwise (on the CPU its
  single-tensor loop), gradients already in ``.grad``.

Method (``harness.warm_up`` / ``time_block``): a warm-up that also picks the calls per block (about
``--block-s`` seconds), then ``--repeat`` rounds; a round times one block of each of bare, ours and torch in
an order that rotates from round to round; the ratios ours/bare and ours/torch are taken round by round and
their medians reported with the median times. Before timing, ours and torch take three steps from equal
arrays and must agree (max |ours - torch| / max |torch| per array at most 1e-12 in float64, 1e-5 in
float32), so the two sides do equal work.

Targets (issue 10): every SGD variant at most 1.5x ``bare``; Adam and AdamW at most torch's time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import machine
from benchmarks.harness import OneThread, time_block, warm_up

SIZES = (784, 256, 256, 10)
LR_SGD, LR_ADAM = 0.1, 1e-3

#: (name, class, hyper-parameters, target: "bare" (ours <= 1.5 x bare) or "torch" (ours <= torch))
CASES = (
    ("SGD", "SGD", {"lr": LR_SGD}, "bare"),
    ("SGD momentum", "SGD", {"lr": LR_SGD, "momentum": 0.9}, "bare"),
    ("SGD nesterov", "SGD", {"lr": LR_SGD, "momentum": 0.9, "nesterov": True}, "bare"),
    ("SGD weight_decay", "SGD", {"lr": LR_SGD, "weight_decay": 1e-4}, "bare"),
    ("Adam", "Adam", {"lr": LR_ADAM}, "torch"),
    ("AdamW", "AdamW", {"lr": LR_ADAM}, "torch"),
)
TARGET_BARE = 1.5
TARGET_TORCH = 1.0


def make_arrays(dtype, seed=0):
    """The MLP's parameters and one gradient dict, float64 drawn and then cast to ``dtype``."""
    rng = np.random.default_rng(seed)
    params, grads = {}, {}
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:]), start=1):
        params[f"W{i}"] = rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)
        params[f"b{i}"] = rng.standard_normal(n_out) * 0.1
    for k, p in params.items():
        grads[k] = rng.standard_normal(p.shape) * 1e-2
    cast = {np.float32: np.float32, np.float64: np.float64}[dtype]
    return {k: v.astype(cast) for k, v in params.items()}, {k: v.astype(cast) for k, v in grads.items()}


def bare_fn(params, grads, lr):
    pairs = [(params[k], grads[k]) for k in params]

    def step():
        for p, g in pairs:
            p -= lr * g

    return step


def ours_fn(kind, hyper, params, grads):
    from manual_bp import optim

    opt = getattr(optim, kind)({k: v.copy() for k, v in params.items()}, **hyper)
    return (lambda: opt.step(grads)), opt


def torch_fn(kind, hyper, params, grads):
    import torch

    tparams = [torch.from_numpy(v.copy()).requires_grad_(True) for v in params.values()]
    for t, g in zip(tparams, grads.values()):
        t.grad = torch.from_numpy(g.copy())
    opt = getattr(torch.optim, kind)(tparams, **hyper)

    @torch.no_grad()
    def step():
        opt.step()

    return step, tparams


def check_equal_work(kind, hyper, params, grads, dtype) -> float:
    """Three steps of ours and torch's from equal arrays: the worst max |ours - torch| / max |torch| over the
    arrays (raises if it is large)."""
    step_o, opt = ours_fn(kind, hyper, params, grads)
    step_t, tparams = torch_fn(kind, hyper, params, grads)
    for _ in range(3):
        step_o()
        step_t()
    worst = 0.0
    for p, t in zip(opt.params.values(), tparams):
        ref = t.detach().numpy()
        worst = max(worst, float(np.max(np.abs(p - ref)) / np.max(np.abs(ref))))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    if not worst <= tol:
        raise RuntimeError(f"{kind}{hyper} {np.dtype(dtype).name}: ours differs from torch by {worst:.3g}")
    return worst


def measure(fns: dict, repeat: int, warmup_s: float, block_s: float) -> dict:
    """Interleaved rounds of every callable in ``fns``; per-round samples (seconds per call)."""
    names = list(fns)
    inner = {n: warm_up(fns[n], warmup_s, block_s) for n in names}
    samples = {n: [] for n in names}
    for r in range(repeat):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            samples[n].append(time_block(fns[n], inner[n]))
    return {"inner": inner, "samples": samples}


def run(repeat: int, warmup_s: float, block_s: float, dtypes) -> list:
    rows = []
    for dtype in dtypes:
        params, grads = make_arrays(dtype)
        for name, kind, hyper, target in CASES:
            equal = check_equal_work(kind, hyper, params, grads, dtype)
            fns = {
                "bare": bare_fn({k: v.copy() for k, v in params.items()}, grads, hyper["lr"]),
                "ours": ours_fn(kind, hyper, params, grads)[0],
                "torch": torch_fn(kind, hyper, params, grads)[0],
            }
            m = measure(fns, repeat, warmup_s, block_s)
            s = m["samples"]
            vs_bare = [o / b for o, b in zip(s["ours"], s["bare"])]
            vs_torch = [o / t for o, t in zip(s["ours"], s["torch"])]
            row = {
                "dtype": np.dtype(dtype).name,
                "case": name,
                "class": kind,
                "hyper": hyper,
                "bare_ms": statistics.median(s["bare"]) * 1e3,
                "ours_ms": statistics.median(s["ours"]) * 1e3,
                "torch_ms": statistics.median(s["torch"]) * 1e3,
                "ours_over_bare": statistics.median(vs_bare),
                "ours_over_torch": statistics.median(vs_torch),
                "target": f"ours/bare <= {TARGET_BARE}" if target == "bare" else "ours/torch <= 1",
                "equal_work_max_rel_diff": equal,
                "inner": m["inner"],
                "samples_s": s,
            }
            ratio, limit = (
                (row["ours_over_bare"], TARGET_BARE)
                if target == "bare"
                else (row["ours_over_torch"], TARGET_TORCH)
            )
            row["meets_target"] = ratio <= limit
            rows.append(row)
            print(
                f"  {row['dtype']} {name}: ours {row['ours_ms']:.3f} ms, bare {row['bare_ms']:.3f}, "
                f"torch {row['torch_ms']:.3f}",
                file=sys.stderr,
                flush=True,
            )
    return rows


def markdown(rows, repeat) -> str:
    lines = [
        f"Median of {repeat} interleaved rounds, 1 thread each, params of MLP {list(SIZES)}.",
        "",
        "| dtype | optimizer | bare ms | ours ms | torch ms | ours/bare | ours/torch | target | met |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dtype']} | {r['case']} | {r['bare_ms']:.3f} | {r['ours_ms']:.3f} | {r['torch_ms']:.3f} "
            f"| {r['ours_over_bare']:.2f} | {r['ours_over_torch']:.2f} | {r['target']} "
            f"| {'yes' if r['meets_target'] else 'no'} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.optim_steps", description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=21, help="timed rounds per case (median reported)")
    p.add_argument("--block-s", type=float, default=0.03, help="seconds per timed block (about)")
    p.add_argument("--warmup-s", type=float, default=0.2, help="seconds of warm-up per callable")
    p.add_argument("--dtype", action="append", choices=("float64", "float32"), help="default: both")
    p.add_argument("--json", type=Path, default=None, help="also write the rows and the machine here")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error(f"--repeat must be >= 1; got {args.repeat}")
    names = args.dtype or ["float64", "float32"]
    dtypes = [{"float64": np.float64, "float32": np.float32}[d] for d in names]
    t0 = time.perf_counter()
    with OneThread():
        rows = run(args.repeat, args.warmup_s, args.block_s, dtypes)
    table = markdown(rows, args.repeat)
    print(table)
    if args.json is not None:
        info = machine.describe()
        info.pop("torch_config", None)
        out = {
            "benchmark": "optim_steps",
            "command": " ".join([sys.executable, "-m", "benchmarks.optim_steps", *(argv or sys.argv[1:])]),
            "machine": info,
            "threads": {"numpy_blas": 1, "torch": 1},
            "settings": {"repeat": args.repeat, "block_s": args.block_s, "warmup_s": args.warmup_s},
            "seconds": time.perf_counter() - t0,
            "rows": rows,
            "markdown": table,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
