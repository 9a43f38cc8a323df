"""Hessian-free optimisation of a vanilla tanh RNN on the adding problem, against Adam on equal wall time.

    python -m benchmarks.hessian_free_adding                   # the experiment (about 6 minutes on 2 cores)
    python -m benchmarks.hessian_free_adding --T 20 --budget 10 --json out.json
    python -m benchmarks.hessian_free_adding cost              # hvp / loss_and_grad, LSTM T=25 N=32 H=128

Martens & Sutskever (ICML 2011) trained vanilla tanh RNNs with Hessian-free optimisation on pathological
long-range problems (the adding problem among them) where first-order methods failed. Here, for each T:

- the model and data of ``manual-bp train adding`` (``manual_bp.tasks``): ``RNN(2, 64, 1)`` tanh, squared
  error read at the last step alone (the mask), torch's default initialisation, seed ``--seed``; the test set
  is the task's (``--test-size`` fresh sequences from the generator seeded ``[seed, 1]``); the test MSE is
  2 E (E = 1/2 (y - o)^2 per sequence); predicting the mean scores 1/6 = 0.167, "solved" means < 0.01;
- ``Adam``: the task's optimiser (lr 1e-2, clip norm 1, fresh batches of 50 from the generator seeded
  ``[seed, 2]``), stepped until the wall-time budget is spent;
- ``HF``: ``manual_bp.hessian_free.HessianFree`` (truncated CG on the Levenberg-Marquardt-damped
  Gauss-Newton matrix, CG backtracking, Armijo line search, warm start) with the Gauss-Newton products of
  ``manual_bp.recurrent_second_order`` (one forward and backward pass per HF step shared by its CG
  products), a fresh batch of ``--hf-batch`` sequences per step (generator seeded ``[seed, 3]``), stepped
  until the same budget is spent; ``HF+SD`` the same with structural damping mu = ``--mu``.

The budget is CPU seconds of this process (``time.process_time``) with every BLAS pool at one thread
(threadpoolctl), so that the other work on a shared machine does not decide the comparison (2 BLAS threads on
a busy 2-core machine ran a gradient 10x slower in wall time); wall seconds are reported too. The clock counts
training only (batches drawn, gradients, products, steps); the test evaluations at every fifth of the budget
are not counted. The hyper-parameters were fixed before the run, not tuned on its
outcome; the seeds are fixed. Results go to stdout as a markdown table (``--json`` for everything).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from manual_bp import datasets
from manual_bp.hessian_free import HessianFree
from manual_bp.optim import Adam
from manual_bp.recurrent_second_order import gvp, gvp_operator, hvp
from manual_bp.tasks import ADDING_BASELINE, ADDING_BATCH, ADDING_LR, make_recurrent
from manual_bp.training import evaluate

SOLVED = 0.01
EVALUATIONS = 5


class SecondOrder:
    """A recurrent model with ``gvp`` / ``gvp_operator`` as methods, for ``HessianFree``, until the models
    carry them (then the model itself is used). ``gvp`` keeps the operator of its last (X, Y, kwargs) and
    parameter values: HessianFree calls ``gvp`` once per CG iteration when structural damping is on, and the
    forward and backward pass of the batch need not be redone for each product."""

    def __init__(self, model):
        self.model = model
        self._memo = None

    @property
    def params(self):
        return self.model.params

    def loss(self, X, Y, **kw):
        return self.model.loss(X, Y, **kw)

    def loss_and_grad(self, X, Y, **kw):
        return self.model.loss_and_grad(X, Y, **kw)

    def gvp_operator(self, X, Y, **kw):
        return gvp_operator(self.model, X, Y, **kw)

    def gvp(self, X, Y, v, structural_damping=0.0, **kw):
        memo = self._memo
        same = (
            memo is not None
            and memo["X"] is X
            and memo["Y"] is Y
            and memo["kw"].keys() == kw.keys()
            and all(memo["kw"][k] is kw[k] for k in kw)
            and all(np.array_equal(memo["params"][k], p) for k, p in self.params.items())
        )
        if not same:
            E, grads, product = gvp_operator(self.model, X, Y, **kw)
            memo = self._memo = {"X": X, "Y": Y, "kw": dict(kw), "E": E, "grads": grads, "product": product,
                                 "params": {k: p.copy() for k, p in self.params.items()}}
        return memo["E"], memo["grads"], memo["product"](v, structural_damping=structural_damping)


def hf_model(model):
    return model if hasattr(model, "gvp") else SecondOrder(model)


def test_mse(net, data) -> float:
    X, Y, m = data
    return 2 * evaluate(net, X, Y, mask=m)["loss"]  # E = 1/2 (y - o)^2 per sequence


def run_adam(T, budget, seed, hidden, test):
    net = make_recurrent("rnn", 2, hidden, 1, loss="squared_error", seed=seed)
    opt = Adam(net.params, lr=ADDING_LR, clip_norm=1.0)
    rng = np.random.default_rng([seed, 2])
    curve, clock, wall, steps, next_eval = [], 0.0, 0.0, 0, budget / EVALUATIONS
    while clock < budget:
        t0, c0 = time.perf_counter(), time.process_time()
        X, Y, m = datasets.adding_problem(T, ADDING_BATCH, rng)
        E, g = net.loss_and_grad(X, Y, mask=m)
        if not math.isfinite(E):
            break
        opt.step(g)
        clock += time.process_time() - c0
        wall += time.perf_counter() - t0
        steps += 1
        if clock >= next_eval or clock >= budget:
            curve.append({"cpu_s": round(clock, 2), "steps": steps, "test_mse": test_mse(net, test)})
            next_eval += budget / EVALUATIONS
    return {"optimizer": "Adam", "steps": steps, "products": 0, "seconds": clock, "wall": wall,
            "curve": curve,
            "test_mse": curve[-1]["test_mse"] if curve else float("nan"),
            "settings": {"lr": ADDING_LR, "clip_norm": 1.0, "batch": ADDING_BATCH}}


def run_hf(T, budget, seed, hidden, test, batch, max_cg, damping, mu):
    net = make_recurrent("rnn", 2, hidden, 1, loss="squared_error", seed=seed)
    opt = HessianFree(hf_model(net), damping=damping, max_cg=max_cg, structural_damping=mu)
    rng = np.random.default_rng([seed, 3])
    curve, infos, clock, wall, steps, products, next_eval = [], [], 0.0, 0.0, 0, 0, budget / EVALUATIONS
    while clock < budget:
        t0, c0 = time.perf_counter(), time.process_time()
        X, Y, m = datasets.adding_problem(T, batch, rng)
        try:
            info = opt.step(X, Y, mask=m)
        except ValueError as exc:  # a non-finite loss or gradient: the run stops there
            infos.append({"error": str(exc)})
            break
        clock += time.process_time() - c0
        wall += time.perf_counter() - t0
        steps += 1
        products += info["gv_products"]
        infos.append({k: info[k] for k in ("loss_before", "loss_after", "rho", "damping", "cg_iterations",
                                           "cg_stop", "chosen_iteration", "alpha", "gv_products")})
        if clock >= next_eval or clock >= budget:
            curve.append({"cpu_s": round(clock, 2), "steps": steps, "products": products,
                          "test_mse": test_mse(net, test)})
            next_eval += budget / EVALUATIONS
    name = "HF" if mu == 0 else "HF+SD"
    return {"optimizer": name, "steps": steps, "products": products, "seconds": clock, "wall": wall,
            "curve": curve,
            "test_mse": curve[-1]["test_mse"] if curve else float("nan"), "steps_info": infos,
            "settings": {"batch": batch, "max_cg": max_cg, "damping0": damping, "structural_damping": mu}}


def experiment(args) -> dict:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _experiment(args)


def _experiment(args) -> dict:
    runs = []
    for T in args.T:
        test = datasets.adding_problem(T, args.test_size, np.random.default_rng([args.seed, 1]))
        for opt in args.optimizers:
            t0 = time.perf_counter()
            if opt == "adam":
                r = run_adam(T, args.budget, args.seed, args.hidden, test)
            else:
                mu = args.mu if opt == "hf-sd" else 0.0
                r = run_hf(T, args.budget, args.seed, args.hidden, test, args.hf_batch, args.max_cg,
                           args.damping, mu)
            r.update(T=T, wall_seconds=time.perf_counter() - t0)
            runs.append(r)
            print(f"  T={T} {r['optimizer']}: test MSE {r['test_mse']:.3g} after {r['steps']} steps, "
                  f"{r['products']} GN products, {r['seconds']:.1f} CPU s ({r['wall']:.1f} s wall)",
                  file=sys.stderr, flush=True)
    return {"budget_cpu_s": args.budget, "hidden": args.hidden, "seed": args.seed,
            "test_size": args.test_size,
            "hf_batch": args.hf_batch, "max_cg": args.max_cg, "damping": args.damping, "mu": args.mu,
            "baseline_mse": ADDING_BASELINE, "solved_below": SOLVED, "runs": runs}


def markdown(result) -> str:
    lines = [
        f"Vanilla tanh RNN(2, {result['hidden']}, 1), adding problem, {result['budget_cpu_s']:g} CPU s of "
        f"training per run (1 BLAS thread, shared 2-core machine), seed {result['seed']}, test MSE on "
        f"{result['test_size']} sequences (mean predictor {result['baseline_mse']:.3f}, solved < "
        f"{result['solved_below']}). HF: batch {result['hf_batch']}, max_cg {result['max_cg']}, initial "
        f"damping {result['damping']:g}; HF+SD: structural damping mu = {result['mu']:g}. Adam: lr "
        f"{ADDING_LR}, clip 1, batch {ADDING_BATCH}.",
        "",
        "| T | optimizer | test MSE | solved | steps | GN products | CPU s | wall s |",
        "|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['T']} | {r['optimizer']} | {r['test_mse']:.3g} "
            f"| {'yes' if r['test_mse'] < SOLVED else 'no'} "
            f"| {r['steps']} | {r['products'] if r['optimizer'] != 'Adam' else '-'} | {r['seconds']:.1f} "
            f"| {r['wall']:.1f} |"
        )
    for opt in dict.fromkeys(r["optimizer"] for r in result["runs"]):
        solved = [r["T"] for r in result["runs"] if r["optimizer"] == opt and r["test_mse"] < SOLVED]
        lines.append(f"\nLargest T solved by {opt}: {max(solved) if solved else 'none'}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- cost
def _cost_fns(m, X, Y, v, recurrent_hvp) -> dict:
    _, _, product = gvp_operator(m, X, Y)
    return {
        "loss_and_grad": lambda: m.loss_and_grad(X, Y),
        "hvp": lambda: hvp(m, X, Y, v),
        "gvp": lambda: gvp(m, X, Y, v),
        "gv_product": lambda: product(v),
        "torch_hvp": lambda: recurrent_hvp(m, X, Y, v),
    }


def cost(args) -> dict:
    """hvp, gvp and a shared-pass GN product against loss_and_grad, and torch's double-backward HVP on its
    own modules, 1 thread each: medians of interleaved rounds (benchmarks.harness)."""
    from manual_bp.reference.recurrent_second_order import recurrent_hvp

    from benchmarks.harness import OneThread, time_block, warm_up
    from manual_bp.models import model_class

    T, N, D, H, K = 25, 32, 64, 128, 64
    rng = np.random.default_rng(0)
    out = {}
    for name in args.models:
        m = model_class(name)(D, H, K, seed=0)
        X, Y = rng.standard_normal((T, N, D)), rng.integers(0, K, (T, N))
        v = {k: rng.standard_normal(p.shape) for k, p in m.params.items()}
        with OneThread():
            fns = _cost_fns(m, X, Y, v, recurrent_hvp)
            inner = {k: warm_up(f, 0.3, 0.2) for k, f in fns.items()}
            samples = {k: [] for k in fns}
            for r in range(args.repeat):
                names = list(fns)[r % len(fns):] + list(fns)[: r % len(fns)]
                for k in names:
                    samples[k].append(time_block(fns[k], inner[k]))
        med = {k: statistics.median(s) * 1e3 for k, s in samples.items()}
        ratios = {k: statistics.median([a / b for a, b in zip(samples[k], samples["loss_and_grad"])])
                  for k in fns}
        out[name] = {"ms": med, "over_loss_and_grad": ratios}
        print(f"  {name} T={T} N={N} D={D} H={H} K={K} float64: "
              + ", ".join(f"{k} {med[k]:.1f} ms ({ratios[k]:.2f}x)" for k in fns), file=sys.stderr)
    return {"shape": {"T": T, "N": N, "D": D, "H": H, "K": K}, "dtype": "float64", "threads": 1, **out}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hessian_free_adding",
                                description=__doc__.split("\n")[0])
    p.add_argument("what", nargs="?", choices=("experiment", "cost"), default="experiment")
    p.add_argument("--T", type=int, nargs="+", default=[20, 50, 100])
    p.add_argument("--optimizers", nargs="+", choices=("hf", "hf-sd", "adam"),
                   default=["hf", "hf-sd", "adam"])
    p.add_argument("--budget", type=float, default=40.0, help="training CPU seconds per run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--hf-batch", type=int, default=250)
    p.add_argument("--max-cg", type=int, default=50)
    p.add_argument("--damping", type=float, default=1.0)
    p.add_argument("--mu", type=float, default=0.03, help="structural damping of HF+SD")
    p.add_argument("--models", nargs="+", default=["LSTM"], help="cost: the models timed")
    p.add_argument("--repeat", type=int, default=7, help="cost: timed rounds")
    p.add_argument("--json", help="write everything to this file")
    args = p.parse_args(argv)
    if args.what == "cost":
        result = cost(args)
        text = json.dumps({k: v for k, v in result.items()}, indent=1)
    else:
        result = experiment(args)
        text = markdown(result)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
