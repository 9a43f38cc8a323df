"""The benchmark cases: one training step (forward, backward, SGD update) on each side, from equal parameters.

A case is a JSON-able ``spec`` dict, so that a worker process can rebuild it:

    {"kind": "mlp", "sizes": [784, 30, 10], "N": 10, "dtype": "float64"}
    {"kind": "rnn" | "lstm" | "gru", "T": 25, "N": 32, "D": 65, "H": 128, "K": 65, "dtype": "float64"}

``make_side(spec, side)`` returns a ``Side`` with

- ``loss_and_grad() -> (float, {name: float64 ndarray})`` in manual_bp's names (the equal-work check);
- ``step()``: one training step, the thing timed.

Both sides start from manual_bp's seeded initialisation (torch's modules get copies), see the same data,
and compute the same loss: for the MLP, sigmoid hidden layers and softmax + cross-entropy from the logits,
batch mean; for the recurrent nets, ``E = (1/N) sum_n sum_t E_tn`` (``recurrent.py`` (O3)), torch's
``F.cross_entropy(..., reduction="sum") / N``. The SGD update is each side's plain rule: ours
``theta -= lr * g`` in place (the seed's rule), torch's ``torch.optim.SGD`` (its fused foreach step) after
``zero_grad``.

This module imports torch only when a torch side is built, so that a worker timing manual_bp runs without
torch's thread pools in its process.
"""

from __future__ import annotations

import numpy as np

LR = 1e-3
SEED = 0


def case_name(spec) -> str:
    if spec["kind"] == "mlp":
        return f"MLP {spec['sizes']} N={spec['N']} {spec['dtype']}"
    return f"{spec['kind'].upper()} T={spec['T']} N={spec['N']} D={spec['D']} H={spec['H']} {spec['dtype']}"


def mlp_flops(spec) -> float:
    """Multiply-adds x 2 of the GEMMs in one MLP training step (elementwise work not counted).

    Forward (F1) 2 N n_in n_out per layer, (BP3) the same per layer, (BP2) the same for layers 2..L
    (dE/dX of the first layer is not computed).
    """
    s, N = spec["sizes"], spec["N"]
    per_layer = [2.0 * N * a * b for a, b in zip(s[:-1], s[1:])]
    return 2 * sum(per_layer) + sum(per_layer[1:])


def recurrent_flops(spec) -> float:
    """GEMM flops of one recurrent training step (forward, BPTT), elementwise work not counted."""
    T, N, D, H, K = (spec[k] for k in ("T", "N", "D", "H", "K"))
    G = {"rnn": 1, "gru": 3, "lstm": 4}[spec["kind"]]
    fwd = 2.0 * T * N * (G * H * D + G * H * H + K * H)
    # backward: dV, dh from output, dU, dW, dh through W (dX is not computed)
    bwd = 2.0 * T * N * (2 * K * H + G * H * D + 2 * G * H * H)
    return fwd + bwd


# ---------------------------------------------------------------------------------------------- data
def make_data(spec):
    """Inputs and integer targets, float64, seeded (the same on both sides and in every process)."""
    rng = np.random.default_rng(1234)
    if spec["kind"] == "mlp":
        X = rng.standard_normal((spec["N"], spec["sizes"][0]))
        Y = rng.integers(0, spec["sizes"][-1], spec["N"])
        return X, Y
    T, N, D, K = spec["T"], spec["N"], spec["D"], spec["K"]
    X = rng.standard_normal((T, N, D))
    Y = rng.integers(0, K, (T, N))
    return X, Y


def make_model(spec, dtype=None):
    """manual_bp's model for ``spec`` in ``dtype`` (default: the spec's), seeded (the registry's class)."""
    from manual_bp.models import model_class

    dtype = np.dtype(dtype or spec["dtype"])
    if spec["kind"] == "mlp":
        sizes = spec["sizes"]
        return model_class("MLP")(sizes, "sigmoid", "softmax", "cross_entropy", dtype=dtype, seed=SEED)
    D, H, K = spec["D"], spec["H"], spec["K"]
    return model_class(spec["kind"])(D, H, K, loss="cross_entropy", dtype=dtype, seed=SEED)


# ---------------------------------------------------------------------------------------------- sides
class OursSide:
    """manual_bp: ``loss_and_grad`` then ``theta -= lr * g`` in place; recurrent passes reuse a Workspace,
    as ``fit`` does."""

    def __init__(self, spec, dtype=None):
        from manual_bp import Workspace

        self.model = make_model(spec, dtype)
        X, Y = make_data(spec)
        self.X = X.astype(self.model.dtype)
        self.Y = Y
        self.kw = {"workspace": Workspace()} if self.model.BATCH_AXIS == 1 else {}

    def loss_and_grad(self):
        E, g = self.model.loss_and_grad(self.X, self.Y, **self.kw)
        return E, {k: np.asarray(g[k], dtype=np.float64) for k in self.model.params}

    def step(self):
        _, grads = self.model.loss_and_grad(self.X, self.Y, **self.kw)
        for k, p in self.model.params.items():
            g = grads[k]
            g *= LR  # the gradient is ours to scale: loss_and_grad returns fresh arrays
            p -= g


class TorchSide:
    """torch: the same net built by the oracle (``manual_bp.reference``: torch's own modules with manual_bp's
    initial weights copied in), autograd, ``torch.optim.SGD``."""

    def __init__(self, spec, dtype=None):
        import torch
        from manual_bp.reference.mlp import _logits, _loss_from_logits
        from manual_bp.reference.recurrent import _step_losses

        from manual_bp import reference

        self.torch = torch
        model = make_model(spec, np.float64)  # manual_bp's initialisation, copied into torch's modules
        dtype = np.dtype(dtype or spec["dtype"])
        tdt = torch.float64 if dtype == np.float64 else torch.float32
        X, Y = make_data(spec)
        self.X = torch.from_numpy(X).to(tdt)
        self.Y = torch.from_numpy(Y.astype(np.int64))
        if spec["kind"] == "mlp":
            layers = reference.build_mlp(model, dtype=tdt)
            self.names = {}
            for l, lin in enumerate(layers, start=1):
                self.names[f"W{l}"], self.names[f"b{l}"] = lin.weight, lin.bias
            self._loss = lambda: _loss_from_logits(model, _logits(model, layers, self.X), self.Y)
        else:
            core, head = reference.build_recurrent(model, dtype=tdt)  # bias_hh frozen at 0 but for the GRU
            self.names = {"U": core.weight_ih_l0, "W": core.weight_hh_l0, "b": core.bias_ih_l0,
                          "V": head.weight, "c": head.bias}
            if spec["kind"] == "gru":
                self.names["bh"] = core.bias_hh_l0
            N = spec["N"]

            def loss():
                hs, _ = core(self.X)  # (T, N, H), h0 = 0
                return _step_losses(model, head, hs, self.Y, None).sum() / N

            self._loss = loss
        self.parameters = list(self.names.values())
        self.opt = torch.optim.SGD(self.parameters, lr=LR)

    # -- the two entry points
    def loss_and_grad(self):
        for p in self.parameters:
            p.grad = None
        loss = self._loss()
        loss.backward()
        grads = {k: p.grad.detach().to(self.torch.float64).numpy().copy() for k, p in self.names.items()}
        return float(loss.item()), grads

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        loss = self._loss()
        loss.backward()
        self.opt.step()


def make_side(spec, side, dtype=None):
    """``side`` is "ours" or "torch"; ``dtype`` overrides the spec's (the equal-work check uses float64)."""
    if side == "ours":
        return OursSide(spec, dtype)
    if side == "torch":
        return TorchSide(spec, dtype)
    raise ValueError(f"side must be 'ours' or 'torch'; got {side!r}")


def check_equal_work(spec) -> dict:
    """Both sides' loss and gradients in float64 from the same parameters and data, judged by the harness's
    table (``manual_bp.harness.TOLERANCES``) and error metric (``gradcheck.rel_error``).

    Returns ``{"ok": bool, "max_rel_err": float, "worst": name, "loss_ours": .., "loss_torch": .., ...}``.
    """
    from manual_bp.harness import allowance, compare_grads

    tol = allowance(np.float64)
    E1, g1 = make_side(spec, "ours", np.float64).loss_and_grad()
    E2, g2 = make_side(spec, "torch", np.float64).loss_and_grad()
    try:
        res = compare_grads(g1, g2, tol=tol.torch, floor=tol.torch_floor)
    except ValueError as exc:  # a shape mismatch
        return {"ok": False, "max_rel_err": float("inf"), "worst": str(exc)}
    loss_err = abs(E1 - E2) / max(abs(E1), abs(E2), 1.0)
    return {
        "ok": bool(res.ok and loss_err <= tol.torch),
        "max_rel_err": res.max_error,
        "worst": res.worst.name,
        "loss_ours": E1,
        "loss_torch": E2,
        "loss_rel_err": loss_err,
        "tol": tol.torch,
    }
