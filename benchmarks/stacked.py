"""A 2-layer bidirectional LSTM training step against ``nn.LSTM``, one thread each (issue 12).

The case of issue 12: T=50, N=32, D=65, H=256, K=65 (a softmax head on the 2*H outputs, cross-entropy summed
over time and averaged over the N sequences), float64 and float32. One step is forward, backward and a plain
SGD update on each side, from equal parameters (ours seeded; torch's modules get copies through the oracle,
``manual_bp.reference.build_recurrent``: ``bias_hh`` held at 0 so that both sides train one bias, as the other
recurrent cases). Before timing, both sides' float64 loss and gradients must agree to the harness's allowance.

Timing reuses ``benchmarks.harness``: every BLAS/OpenMP pool at one thread (``OneThread``), a warm-up, then
interleaved rounds (``compare_fns``); the ratio is the median of per-round ratios ours/torch.

    python -m benchmarks.stacked                 # 9 rounds
    python -m benchmarks.stacked --quick         # 3 short rounds
    python -m benchmarks.stacked --wait-quiet 0.3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import OneThread, Settings, compare_fns, wait_quiet

LR = 1e-3
CASES = [
    ({"T": 50, "N": 32, "D": 65, "H": 256, "K": 65, "num_layers": 2, "dtype": "float64"}, 0.9),
    ({"T": 50, "N": 32, "D": 65, "H": 256, "K": 65, "num_layers": 2, "dtype": "float32"}, 1.0),
]


def case_name(spec) -> str:
    return (f"LSTM {spec['num_layers']} layers bidirectional T={spec['T']} N={spec['N']} D={spec['D']} "
            f"H={spec['H']} {spec['dtype']}")


def make_model(spec, dtype=None):
    from manual_bp import LSTM

    return LSTM(spec["D"], spec["H"], spec["K"], num_layers=spec["num_layers"], bidirectional=True,
                dtype=np.dtype(dtype or spec["dtype"]), seed=0)


def make_data(spec):
    rng = np.random.default_rng(1234)
    X = rng.standard_normal((spec["T"], spec["N"], spec["D"]))
    return X, rng.integers(0, spec["K"], (spec["T"], spec["N"]))


class Ours:
    """manual_bp: ``loss_and_grad`` with a Workspace (as ``fit``), then ``theta -= lr * g`` in place."""

    def __init__(self, spec, dtype=None):
        from manual_bp import Workspace

        self.model = make_model(spec, dtype)
        X, self.Y = make_data(spec)
        self.X = X.astype(self.model.dtype)
        self.ws = Workspace()

    def loss_and_grad(self):
        E, g = self.model.loss_and_grad(self.X, self.Y, workspace=self.ws)
        return E, {k: np.asarray(g[k], dtype=np.float64) for k in self.model.params}

    def step(self):
        _, grads = self.model.loss_and_grad(self.X, self.Y, workspace=self.ws)
        for k, p in self.model.params.items():
            g = grads[k]
            g *= LR
            p -= g


class Torch:
    """torch: ``nn.LSTM(num_layers=2, bidirectional=True)`` and ``nn.Linear`` with our initial weights,
    autograd, ``torch.optim.SGD``."""

    def __init__(self, spec, dtype=None):
        import torch
        import torch.nn.functional as F
        from manual_bp.reference import build_recurrent

        model = make_model(spec, np.float64)
        self.names = model.param_names()
        dtype = np.dtype(dtype or spec["dtype"])
        tdt = torch.float64 if dtype == np.float64 else torch.float32
        self.core, self.head = build_recurrent(model, dtype=tdt)
        X, Y = make_data(spec)
        self.X, self.Y = torch.from_numpy(X).to(tdt), torch.from_numpy(Y.astype(np.int64))
        N, K = spec["N"], spec["K"]
        every = list(self.core.parameters()) + list(self.head.parameters())
        self.params = [p for p in every if p.requires_grad]
        self.opt = torch.optim.SGD(self.params, lr=LR)

        def loss():
            out, _ = self.core(self.X)
            return F.cross_entropy(self.head(out).reshape(-1, K), self.Y.reshape(-1), reduction="sum") / N

        self._loss = loss

    def loss_and_grad(self):
        for p in self.params:
            p.grad = None
        loss = self._loss()
        loss.backward()
        named = dict(self.core.named_parameters())
        named.update({f"head.{k}": v for k, v in self.head.named_parameters()})
        grads = {ours: named[theirs].grad.detach().double().numpy().copy()
                 for ours, theirs in self.names.items()}
        return float(loss.item()), grads

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        self._loss().backward()
        self.opt.step()


def check_equal_work(spec) -> dict:
    """Both sides' float64 loss and gradients from the same parameters, judged by the harness's table."""
    from manual_bp.harness import allowance, compare_grads

    tol = allowance(np.float64)
    E1, g1 = Ours(spec, np.float64).loss_and_grad()
    E2, g2 = Torch(spec, np.float64).loss_and_grad()
    res = compare_grads(g1, g2, tol=tol.torch, floor=tol.torch_floor)
    loss_err = abs(E1 - E2) / max(abs(E1), abs(E2), 1.0)
    return {"ok": bool(res.ok and loss_err <= tol.torch), "max_rel_err": max(res.max_error, loss_err)}


def run(st: Settings, log=print) -> list:
    rows = []
    for spec, target in CASES:
        check = check_equal_work(spec)
        if not check["ok"]:
            raise RuntimeError(
                f"{case_name(spec)}: the two sides differ (max rel. err {check['max_rel_err']:.1e})")
        load_before = wait_quiet(st)
        with OneThread():
            out = compare_fns(Ours(spec).step, Torch(spec).step, st)
        load_after = wait_quiet(Settings(quiet_below=None))
        row = {"case": case_name(spec), "check": check["max_rel_err"], "ours_ms": 1e3 * out["ours_s"],
               "torch_ms": 1e3 * out["torch_s"], "ratio": out["ratio"], "ratio_min": out["ratio_min"],
               "ratio_max": out["ratio_max"], "target": target, "met": out["ratio"] <= target,
               "rounds": out["rounds"], "load": (load_before, load_after)}
        rows.append(row)
        log(format_row(row))
    return rows


HEADER = ("| case | check (max rel. err) | ours ms | torch ms | ratio (min-max) | target "
          "| other load before/after |\n| --- | --- | ---: | ---: | ---: | --- | ---: |")


def format_row(r) -> str:
    met = "met" if r["met"] else "**not met**"
    return (f"| {r['case']} | {r['check']:.1e} | {r['ours_ms']:.1f} | {r['torch_ms']:.1f} | "
            f"{r['ratio']:.3f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | <= {r['target']}: {met} | "
            f"{r['load'][0]} / {r['load'][1]} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.stacked", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="3 short rounds instead of 9")
    p.add_argument("--wait-quiet", type=float, default=None, metavar="LOAD",
                   help="wait before each case until other runnable processes average below LOAD")
    args = p.parse_args(argv)
    st = Settings.make(args.quick)
    st.quiet_below = args.wait_quiet
    print(HEADER)
    run(st)
    return 0


if __name__ == "__main__":
    sys.exit(main())
