"""The paths users run: one ``fit`` epoch and one ``fit_stream`` epoch, against torch's own training loop.

Both sides run the same epoch from the same parameters: the same batches in the same order (``fit``'s shuffle,
``default_rng([seed, e]).permutation(N)``, replayed on the torch side), the same loss, and the optimizer of
the same name with the same hyper-parameters. Ours is ``manual_bp.fit`` / ``fit_stream`` with
``manual_bp.optim``; torch's is the loop its users write: ``zero_grad()``, forward, ``backward()``,
``step()`` with ``torch.optim``, and ``h.detach()`` between the chunks of a stream. Both at 1 thread (the
``OneThread`` policy of ``benchmarks.harness``), in one process, interleaved rounds, medians.

The torch side is built by the oracle (``manual_bp.reference``): torch's modules with our initial weights.
An equal-work row checks, in float64, that one epoch on each side ends at the same parameters.

    python -m benchmarks.user_path [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import OneThread, Settings, compare_fns  # noqa: E402

SEED = 0

#: (name, sizes, N samples, batch size) of the MLP epochs: the digits task's size, and the largest MLP case
MLP_CASES = [
    ("digits-sized", [64, 30, 10], 1437, 10),
    ("[784,256,256,10]", [784, 256, 256, 10], 2560, 128),
]
#: the README's language model, one epoch over a shorter synthetic text: LSTM H=128, 16 streams, chunks of 50
LM_CASE = {"vocab": 96, "H": 128, "n_streams": 16, "steps": 1000, "chunk": 50}

OPTIMIZERS = {"SGD": {"lr": 0.05}, "Adam": {"lr": 1e-3}}


def _data(N, D, K, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, D)), rng.integers(0, K, N)


def mlp_sides(sizes, N, batch, opt_name, dtype="float64"):
    """``(ours_epoch, torch_epoch, ours_model, torch_params)`` for one MLP epoch."""
    import torch
    from manual_bp.reference.mlp import _logits, _loss_from_logits

    import manual_bp
    from manual_bp import reference

    X, y = _data(N, sizes[0], sizes[-1])
    ours = manual_bp.MLP(sizes, "sigmoid", "softmax", "cross_entropy", dtype=dtype, seed=SEED)
    opt = getattr(manual_bp, opt_name)(ours.params, **OPTIMIZERS[opt_name])
    Xo = X.astype(dtype)

    def ours_epoch():
        manual_bp.fit(ours, opt, Xo, y, epochs=1, batch_size=batch, seed=SEED)

    tdt = torch.float64 if dtype == "float64" else torch.float32
    layers = reference.build_mlp(ours, dtype=tdt)  # copies of our initial weights
    topt = getattr(torch.optim, opt_name)(layers.parameters(), **OPTIMIZERS[opt_name])
    Xt, yt = torch.from_numpy(X).to(tdt), torch.from_numpy(y.astype(np.int64))
    perm = torch.from_numpy(np.random.default_rng([SEED, 0]).permutation(N))  # fit's epoch-0 shuffle

    def torch_epoch():
        for start in range(0, N, batch):
            idx = perm[start : start + batch]
            topt.zero_grad()
            loss = _loss_from_logits(ours, _logits(ours, layers, Xt[idx]), yt[idx])
            loss.backward()
            topt.step()

    def torch_params():
        return {f"{kind}{l}": getattr(lin, "weight" if kind == "W" else "bias").detach().numpy()
                for l, lin in enumerate(layers, start=1) for kind in ("W", "b")}

    return ours_epoch, torch_epoch, ours, torch_params


def lm_sides(opt_name="Adam", dtype="float64", case=LM_CASE):
    """``(ours_epoch, torch_epoch, ours_model, torch_params)`` for one ``fit_stream`` epoch of the LSTM."""
    import torch
    from manual_bp.reference.recurrent import _step_losses

    import manual_bp
    from manual_bp import reference

    V, H, S, chunk = case["vocab"], case["H"], case["n_streams"], case["chunk"]
    text = np.random.default_rng(2).integers(0, V, case["steps"] * S + 1)
    ours = manual_bp.LSTM(V, H, V, dtype=dtype, seed=SEED)
    opt = getattr(manual_bp, opt_name)(ours.params, **OPTIMIZERS[opt_name])

    def ours_epoch():
        manual_bp.fit_stream(ours, opt, text[:-1], text[1:], epochs=1, chunk_length=chunk, n_streams=S)

    tdt = torch.float64 if dtype == "float64" else torch.float32
    core, head = reference.build_recurrent(ours, dtype=tdt)
    trained = [p for p in list(core.parameters()) + list(head.parameters()) if p.requires_grad]
    topt = getattr(torch.optim, opt_name)(trained, **OPTIMIZERS[opt_name])
    Xs = manual_bp.training.batchify(text[:-1], S)
    Ys = manual_bp.training.batchify(text[1:], S)
    eye = torch.eye(V, dtype=tdt)
    Xt, Yt = eye[torch.from_numpy(Xs.astype(np.int64))], torch.from_numpy(Ys.astype(np.int64))

    def torch_epoch():
        state = None
        for start in range(0, len(Xs), chunk):
            topt.zero_grad()
            out, state = core(Xt[start : start + chunk], state)
            loss = _step_losses(ours, head, out, Yt[start : start + chunk], None).sum() / S
            loss.backward()
            topt.step()
            state = tuple(s.detach() for s in state)  # the carried state: no gradient crosses over

    def torch_params():
        return {"U": core.weight_ih_l0.detach().numpy(), "W": core.weight_hh_l0.detach().numpy(),
                "b": core.bias_ih_l0.detach().numpy(), "V": head.weight.detach().numpy(),
                "c": head.bias.detach().numpy()}

    return ours_epoch, torch_epoch, ours, torch_params


def equal_work(make) -> float:
    """Max norm-wise relative difference of the parameters after one float64 epoch on each side."""
    from manual_bp.harness import compare_grads

    ours_epoch, torch_epoch, ours, torch_params = make()
    with OneThread():
        ours_epoch()
        torch_epoch()
    return compare_grads(ours.params, torch_params(), tol=1.0, floor=1e-12).max_error


def run_userpath(st: Settings, log=print) -> list:
    rows = []
    cases = []
    for name, sizes, N, batch in MLP_CASES:
        for opt_name in OPTIMIZERS:
            for dtype in ("float64", "float32"):
                if st.quick and (dtype == "float32" or N > 2000):
                    continue
                cases.append((f"fit epoch MLP {name} N={N} batch {batch} {opt_name} {dtype}",
                              lambda s=sizes, n=N, b=batch, o=opt_name, d=dtype: mlp_sides(s, n, b, o, d)))
    lm = dict(LM_CASE, steps=200) if st.quick else LM_CASE
    for dtype in ("float64", "float32"):
        if st.quick and dtype == "float32":
            continue
        cases.append((f"fit_stream epoch LSTM LM H={lm['H']} {lm['steps']}x{lm['n_streams']} chunks of "
                      f"{lm['chunk']} Adam {dtype}", lambda d=dtype: lm_sides("Adam", d, lm)))
    for name, make in cases:
        err = equal_work(make) if name.endswith("float64") else None
        ours_epoch, torch_epoch, _, _ = make()
        with OneThread():
            res = compare_fns(ours_epoch, torch_epoch, st)
        row = {"suite": "userpath", "name": name, "equal_work_rel_err": err, **res,
               "threads": {"ours": 1, "torch": 1}}
        rows.append(row)
        log(f"  {name}: ours {res['ours_s'] * 1e3:.1f} ms, torch {res['torch_s'] * 1e3:.1f} ms, "
            f"ratio {res['ratio']:.3f}" + ("" if err is None else f", equal work {err:.1e}"))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.user_path", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few rounds, small cases")
    p.add_argument("--json", type=Path, default=None, help="write the rows to this file")
    args = p.parse_args(argv)
    rows = run_userpath(Settings.make(args.quick))
    print("\n| path | ours ms | torch ms | ours/torch |\n| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['name']} | {r['ours_s'] * 1e3:.1f} | {r['torch_s'] * 1e3:.1f} | {r['ratio']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps([{k: v for k, v in r.items() if not k.endswith("samples")}
                                         for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
