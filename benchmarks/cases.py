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
    """manual_bp's model for ``spec`` in ``dtype`` (default: the spec's), seeded."""
    import manual_bp

    dtype = np.dtype(dtype or spec["dtype"])
    if spec["kind"] == "mlp":
        return manual_bp.MLP(spec["sizes"], "sigmoid", "softmax", "cross_entropy", dtype=dtype, seed=SEED)
    D, H, K = spec["D"], spec["H"], spec["K"]
    if spec["kind"] == "rnn":
        return manual_bp.RNN(D, H, K, nonlinearity="tanh", loss="cross_entropy", dtype=dtype, seed=SEED)
    cls = {"lstm": "LSTM", "gru": "GRU"}[spec["kind"]]
    return getattr(manual_bp, cls)(D, H, K, loss="cross_entropy", dtype=dtype, seed=SEED)


def available(spec) -> bool:
    """Whether manual_bp has the model class this case needs (the recurrent ones arrived later)."""
    import manual_bp

    need = {"mlp": "MLP", "rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[spec["kind"]]
    return hasattr(manual_bp, need)


# ---------------------------------------------------------------------------------------------- sides
class OursSide:
    """manual_bp: ``loss_and_grad`` then ``theta -= lr * g`` in place."""

    def __init__(self, spec, dtype=None):
        self.model = make_model(spec, dtype)
        X, Y = make_data(spec)
        self.X = X.astype(self.model.dtype)
        self.Y = Y

    def loss_and_grad(self):
        E, g = self.model.loss_and_grad(self.X, self.Y)
        return E, {k: np.asarray(g[k], dtype=np.float64) for k in self.model.params}

    def step(self):
        _, grads = self.model.loss_and_grad(self.X, self.Y)
        for k, p in self.model.params.items():
            g = grads[k]
            g *= LR  # the gradient is ours to scale: loss_and_grad returns fresh arrays
            p -= g


class TorchSide:
    """torch: the same net from torch's own modules, autograd, ``torch.optim.SGD``."""

    def __init__(self, spec, dtype=None):
        import torch

        self.torch = torch
        self.spec = spec
        model = make_model(spec, np.float64)  # manual_bp's initialisation, copied into torch's modules
        dtype = np.dtype(dtype or spec["dtype"])
        tdt = torch.float64 if dtype == np.float64 else torch.float32
        X, Y = make_data(spec)
        self.X = torch.from_numpy(X).to(tdt)
        self.Y = torch.from_numpy(Y.astype(np.int64))
        P = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)).to(tdt) for k, v in model.params.items()}
        if spec["kind"] == "mlp":
            self._build_mlp(spec, P, tdt)
        else:
            self._build_recurrent(spec, P, tdt)
        self.opt = torch.optim.SGD(self.parameters, lr=LR)

    # -- MLP: nn.Linear layers, torch.sigmoid between them, F.cross_entropy from the logits
    def _build_mlp(self, spec, P, tdt):
        torch = self.torch
        s = spec["sizes"]
        self.layers = [torch.nn.Linear(a, b, dtype=tdt) for a, b in zip(s[:-1], s[1:])]
        with torch.no_grad():
            for l, lin in enumerate(self.layers, start=1):
                lin.weight.copy_(P[f"W{l}"])
                lin.bias.copy_(P[f"b{l}"])
        self.parameters = [p for lin in self.layers for p in lin.parameters()]
        self.names = {}
        for l, lin in enumerate(self.layers, start=1):
            self.names[f"W{l}"] = lin.weight
            self.names[f"b{l}"] = lin.bias
        self._loss = self._mlp_loss

    def _mlp_loss(self):
        F = self.torch.nn.functional
        a = self.X
        for l, lin in enumerate(self.layers, start=1):
            z = lin(a)
            if l < len(self.layers):
                a = self.torch.sigmoid(z)
        return F.cross_entropy(z, self.Y)

    # -- recurrent: nn.RNN / nn.LSTM / nn.GRU + nn.Linear + F.cross_entropy(sum) / N
    def _build_recurrent(self, spec, P, tdt):
        torch = self.torch
        D, H, K = spec["D"], spec["H"], spec["K"]
        kind = spec["kind"]
        if kind == "rnn":
            self.cell = torch.nn.RNN(D, H, nonlinearity="tanh", dtype=tdt)
        elif kind == "lstm":
            self.cell = torch.nn.LSTM(D, H, dtype=tdt)
        else:
            self.cell = torch.nn.GRU(D, H, dtype=tdt)
        self.out = torch.nn.Linear(H, K, dtype=tdt)
        with torch.no_grad():
            self.cell.weight_ih_l0.copy_(P["U"])
            self.cell.weight_hh_l0.copy_(P["W"])
            self.cell.bias_ih_l0.copy_(P["b"])
            self.cell.bias_hh_l0.copy_(P["bh"] if kind == "gru" else torch.zeros_like(P["b"]))
            self.out.weight.copy_(P["V"])
            self.out.bias.copy_(P["c"])
        self.names = {
            "U": self.cell.weight_ih_l0,
            "W": self.cell.weight_hh_l0,
            "b": self.cell.bias_ih_l0,
            "V": self.out.weight,
            "c": self.out.bias,
        }
        if kind == "gru":
            self.names["bh"] = self.cell.bias_hh_l0
            self.parameters = list(self.cell.parameters()) + list(self.out.parameters())
        else:
            # ours has one bias b; torch's bias_hh stays at 0 and is not trained, so both learn the same net
            self.cell.bias_hh_l0.requires_grad_(False)
            self.parameters = [
                self.cell.weight_ih_l0,
                self.cell.weight_hh_l0,
                self.cell.bias_ih_l0,
                self.out.weight,
                self.out.bias,
            ]
        self._loss = self._recurrent_loss

    def _recurrent_loss(self):
        F = self.torch.nn.functional
        T, N, K = self.spec["T"], self.spec["N"], self.spec["K"]
        hs, _ = self.cell(self.X)  # (T, N, H), h0 = 0
        logits = self.out(hs)  # (T, N, K)
        return F.cross_entropy(logits.reshape(T * N, K), self.Y.reshape(T * N), reduction="sum") / N

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


# Equal work: float64 against float64, as tests/helpers.py TOL_TORCH (a few ulps times the depth).
CHECK_TOL = 1e-10


def check_equal_work(spec) -> dict:
    """Both sides' loss and gradients in float64 from the same parameters and data.

    Returns ``{"ok": bool, "max_rel_err": float, "worst": name, "loss_ours": .., "loss_torch": ..}``; the
    error is norm-wise relative per array, ``max|ours - torch| / max(max|ours|, max|torch|)``, as
    manual_bp.gradcheck.
    """
    E1, g1 = make_side(spec, "ours", np.float64).loss_and_grad()
    E2, g2 = make_side(spec, "torch", np.float64).loss_and_grad()
    worst, worst_err = None, 0.0
    for k in g1:
        if g1[k].shape != g2[k].shape:
            return {
                "ok": False,
                "max_rel_err": float("inf"),
                "worst": f"{k} shape {g1[k].shape} != {g2[k].shape}",
            }
        scale = max(np.abs(g1[k]).max(), np.abs(g2[k]).max(), 1e-300)
        err = float(np.abs(g1[k] - g2[k]).max() / scale)
        if err >= worst_err:
            worst, worst_err = k, err
    loss_err = abs(E1 - E2) / max(abs(E1), abs(E2), 1.0)
    ok = worst_err <= CHECK_TOL and loss_err <= CHECK_TOL
    return {
        "ok": bool(ok),
        "max_rel_err": worst_err,
        "worst": worst,
        "loss_ours": E1,
        "loss_torch": E2,
        "loss_rel_err": loss_err,
        "tol": CHECK_TOL,
    }
