"""manual_bp.training: XOR gets solved, runs are bit-for-bit deterministic, the loop is the documented one,
and stream training with carried, detached state equals torch doing the same (nn.RNN/LSTM/GRU + nn.Linear,
torch.optim, ``h.detach()`` between chunks).
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import manual_bp
from manual_bp import MLP
from manual_bp.models import RECURRENT_MODELS
from manual_bp.optim import SGD, Adam, StepLR
from manual_bp.training import Progress, accuracy, batchify, evaluate, evaluate_stream, fit, fit_stream
from tests.helpers import assert_grads_close, assert_scalar_close, tol_torch

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
XOR_Y = np.array([[0], [1], [1], [0]], dtype=float)

RECURRENT = list(RECURRENT_MODELS)
# Training compounds rounding over every update, so float64 trajectories agree to ~1e-13 rather than ~1e-15;
# the allowance is the torch-gradient one (helpers.TOL_TORCH), with a floor that only keeps 0/0 out.
FLOOR = 1e-12


def snapshot(params):
    return {k: v.copy() for k, v in params.items()}


def equal(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------- MLP
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_xor_gets_solved(kind):
    net = MLP([2, 4, 1], "tanh", "sigmoid", "squared_error", seed=0)
    opt = SGD(net.params, lr=2.0, momentum=0.9) if kind == "sgd" else Adam(net.params, lr=0.05)
    history = fit(net, opt, XOR_X, XOR_Y, epochs=300, batch_size=4, eval_train=True, progress=False)
    first, last = history[0]["loss"], history[-1]["loss"]
    if not last < first / 100:
        raise AssertionError(f"XOR loss fell only from {first:.4g} to {last:.4g}")
    assert history[-1]["train_accuracy"] == 1.0
    assert np.array_equal(net.predict(XOR_X), XOR_Y[:, 0].astype(int))
    out = net.forward(XOR_X)[:, 0]
    if not (np.abs(out - XOR_Y[:, 0]) < 0.1).all():
        raise AssertionError(f"XOR outputs {out} are not within 0.1 of {XOR_Y[:, 0]}")


def _blobs(seed=0, N=60, D=3, K=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, N)
    X = rng.standard_normal((N, D)) + 2.0 * np.eye(K, D)[y]
    return X, y


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_same_seed_same_bits_other_seed_other_bits(dtype):
    X, y = _blobs()

    def run(seed):
        net = MLP([3, 5, 3], "relu", "softmax", "cross_entropy", dtype=dtype, seed=1)
        opt = Adam(net.params, lr=0.01)
        h = fit(
            net, opt, X, y, epochs=3, batch_size=7, seed=seed, validation=(X[:10], y[:10]), progress=False
        )
        return net, opt, h

    a, oa, ha = run(5)
    b, ob, hb = run(5)
    c, _, _ = run(6)
    assert equal(a.params, b.params) and ha == hb
    assert all(equal(oa.state[k], ob.state[k]) for k in oa.state)
    assert all(p.dtype == dtype for p in a.params.values())
    assert not equal(a.params, c.params)  # the seed does reach the shuffle


def test_fit_is_the_documented_loop():
    """(T1-T4) by hand: permutation from default_rng([seed, e]), batch-mean gradients, one step per batch."""
    X, y = _blobs(N=23)
    seed, bs, epochs = 3, 5, 3
    net = MLP([3, 4, 3], "tanh", "softmax", "cross_entropy", seed=2)
    ref = MLP([3, 4, 3], "tanh", "softmax", "cross_entropy", seed=2)
    opt, ref_opt = SGD(net.params, lr=0.3, momentum=0.5), SGD(ref.params, lr=0.3, momentum=0.5)
    sched, ref_sched = StepLR(opt, step_size=2, gamma=0.5), StepLR(ref_opt, step_size=2, gamma=0.5)
    history = fit(net, opt, X, y, epochs=epochs, batch_size=bs, seed=seed, scheduler=sched, progress=False)
    for e in range(epochs):
        perm = np.random.default_rng([seed, e]).permutation(len(X))
        lr, total = ref_opt.lr, 0.0
        for start in range(0, len(X), bs):
            idx = perm[start : start + bs]
            E, g = ref.loss_and_grad(X[idx], y[idx])
            ref_opt.step(g)
            total += len(idx) * E
        ref_sched.step()
        assert history[e] == {"epoch": e + 1, "lr": lr, "loss": total / len(X)}
    assert equal(net.params, ref.params)
    assert [h["lr"] for h in history] == [0.3, 0.3, 0.15]


def test_metrics_where_they_mean_something():
    X, y = _blobs(N=30)
    clf = MLP([3, 4, 3], "tanh", "softmax", "cross_entropy", seed=0)
    onehot = np.eye(3)[y]
    assert accuracy(clf, X, y) == accuracy(clf, X, onehot) == np.mean(clf.predict(X) == y)
    seed_setup = MLP([3, 4, 3], "sigmoid", "sigmoid", "squared_error", seed=0)  # the seed's: one-hot targets
    assert accuracy(seed_setup, X, onehot) == np.mean(seed_setup.forward(X).argmax(1) == y)
    reg = MLP([3, 4, 2], "tanh", "identity", "squared_error", seed=0)
    Yr = np.random.default_rng(0).standard_normal((30, 2))
    assert accuracy(reg, X, Yr) is None
    h = fit(
        reg, SGD(reg.params, lr=0.1), X, Yr, epochs=1, validation=(X, Yr), eval_train=True, progress=False
    )
    assert h[0]["val_accuracy"] is None and h[0]["train_accuracy"] is None
    ev = evaluate(reg, X, Yr, batch_size=7)
    assert_scalar_close(ev["loss"], reg.loss(X, Yr), 1e-14, "evaluate in batches vs one pass")
    assert ev["loss"] == h[0]["val_loss"] == h[0]["train_loss"] or abs(ev["loss"] - h[0]["val_loss"]) < 1e-14


def test_progress_bar_on_stderr_and_off(capsys):
    net = MLP([2, 3, 1], "tanh", "sigmoid", "squared_error", seed=0)
    fit(net, SGD(net.params, lr=0.1), XOR_X, XOR_Y, epochs=2, batch_size=2, progress=True)
    out = capsys.readouterr()
    assert out.out == ""
    assert re.search(r"epoch 1/2: lr 0\.1000, loss \d\.\d{4}", out.err) and "epoch 2/2" in out.err
    fit(net, SGD(net.params, lr=0.1), XOR_X, XOR_Y, epochs=2, batch_size=2, progress=False)
    assert capsys.readouterr() == ("", "")
    tty = io.StringIO()
    tty.isatty = lambda: True
    bar = Progress(True, file=tty, interval=0.0)
    bar.start(1, 3, 10)
    bar.update(5, 0.5)
    assert "\repoch 1/3 [############............] 5/10 loss 0.5000" in tty.getvalue()


def test_bad_arguments_raise_before_any_update():
    net = MLP([2, 3, 1], "tanh", "sigmoid", "squared_error", seed=0)
    other = MLP([2, 3, 1], "tanh", "sigmoid", "squared_error", seed=0)
    opt = SGD(net.params, lr=0.1)
    before = snapshot(net.params)
    cases = [
        (dict(optimizer=SGD(other.params, lr=0.1)), ValueError, "optimizer.params is not model.params"),
        (dict(epochs=-1), ValueError, "epochs must be >= 0; got -1"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1; got 0"),
        (dict(batch_size=2.5), TypeError, "batch_size must be an integer"),
        (dict(seed=-3), ValueError, "seed must be >= 0; got -3"),
        (dict(initial_epoch=5), ValueError, "initial_epoch must be <= epochs=2; got 5"),
        (dict(initial_epoch=1), ValueError, "history must have one entry per finished epoch"),
        (dict(mask=np.ones((1, 4), bool)), ValueError, "recurrent models only"),
        (dict(Y=XOR_Y[:3]), ValueError, r"same N; got X \(4, 2\), Y \(3, 1\)"),
        (dict(X=XOR_X[:, :1]), ValueError, r"X must have shape \(N, n0=2\); got \(4, 1\)"),
        (dict(Y=np.array([[0], [1], [np.nan], [0]])), ValueError, "Y must be finite"),
        (dict(validation=(XOR_X[:, :1], XOR_Y)), ValueError, r"X must have shape \(N, n0=2\)"),
        (dict(validation=XOR_X), TypeError, r"validation must be a tuple \(X_val, Y_val\)"),
        (dict(progress="yes"), TypeError, "progress must be True, False or an object with start"),
        (
            dict(scheduler=StepLR(SGD(other.params, lr=0.1), 1)),
            ValueError,
            "scheduler must schedule the optimizer",
        ),
        (dict(callbacks=3), TypeError, "callbacks must be a sequence of callables"),
        (dict(callbacks=[3]), TypeError, "callbacks must be a sequence of callables"),
    ]
    for change, exc, message in cases:
        kw = dict(model=net, optimizer=opt, X=XOR_X, Y=XOR_Y, epochs=2, batch_size=2, progress=False)
        kw.update(change)
        with pytest.raises(exc, match=message):
            fit(kw.pop("model"), kw.pop("optimizer"), kw.pop("X"), kw.pop("Y"), **kw)
        assert equal(net.params, before) and opt.step_count == 0, change
    with pytest.raises(TypeError, match="fit_stream trains recurrent models"):
        fit_stream(net, opt, XOR_X, XOR_Y, epochs=1, chunk_length=2, progress=False)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow that the error then reports
def test_diverging_run_stops_with_a_clear_error():
    net = MLP([2, 3, 1], "relu", "identity", "squared_error", seed=0)
    opt = SGD(net.params, lr=1e200)
    with pytest.raises(ValueError, match=r"epoch \d+, batch \d/2: the loss is (inf|nan); training diverged"):
        fit(net, opt, XOR_X, XOR_Y * 1e3, epochs=50, batch_size=2, progress=False)


def test_batchify_cuts_contiguous_pieces():
    s = np.arange(11)
    b = batchify(s, 3)  # M = 3, the last 2 steps dropped
    assert b.shape == (3, 3) and np.array_equal(b[:, 1], [3, 4, 5]) and np.array_equal(b[:, 2], [6, 7, 8])
    assert batchify(np.ones((7, 2)), 2).shape == (3, 2, 2)
    with pytest.raises(ValueError, match="too short for n_streams=5"):
        batchify(np.arange(4), 5)


# ---------------------------------------------------------------------------------------------- recurrent
def _torch_params(core, head, kind):
    p = {"U": core.weight_ih_l0, "W": core.weight_hh_l0, "b": core.bias_ih_l0}
    if kind == "GRU":
        p["bh"] = core.bias_hh_l0
    p.update(V=head.weight, c=head.bias)
    return p


def _make(kind, D=5, H=4, K=5, loss="cross_entropy", seed=0):
    return getattr(manual_bp, kind)(D, H, K, loss=loss, dtype=np.float64, seed=seed)


def torch_stream(model, stream_X, stream_Y, epochs, chunk_length, n_streams, opt_kind, hyper):
    """torch doing truncated BPTT on a stream: same pieces, same chunks, ``h.detach()`` between chunks."""
    from manual_bp.reference.recurrent import build_recurrent

    kind = type(model).__name__
    core, head = build_recurrent(model, dtype=np.float64)
    tp = _torch_params(core, head, kind)
    topt = getattr(torch.optim, opt_kind)(list(tp.values()), foreach=False, **hyper)
    Xs, Ys = batchify(stream_X, n_streams), batchify(stream_Y, n_streams)
    M, N, D = Xs.shape[0], n_streams, model.input_size
    x_all = F.one_hot(torch.as_tensor(Xs.astype(np.int64)), D).double()
    y_all = torch.as_tensor(Ys.astype(np.int64))
    losses = []
    for _ in range(epochs):
        h = torch.zeros(1, N, model.hidden_size, dtype=torch.float64)
        state = (h, h.clone()) if kind == "LSTM" else h
        total = 0.0
        for a in range(0, M, chunk_length):
            x, y = x_all[a : a + chunk_length], y_all[a : a + chunk_length]
            out, state = core(x, state)
            q = head(out)
            loss = F.cross_entropy(q.reshape(-1, q.shape[-1]), y.reshape(-1), reduction="sum") / N
            topt.zero_grad()
            loss.backward()
            topt.step()
            state = (
                tuple(s.detach() for s in state) if kind == "LSTM" else state.detach()
            )  # no gradient across
            total += loss.item()
        losses.append(total / M)
    return {k: v.detach().numpy().copy() for k, v in tp.items()}, losses


@pytest.mark.parametrize("kind", RECURRENT)
@pytest.mark.parametrize("opt_kind, hyper", [("SGD", dict(lr=0.5)), ("Adam", dict(lr=0.02))])
def test_stream_training_equals_torch(kind, opt_kind, hyper):
    rng = np.random.default_rng(1)
    text = rng.integers(0, 5, 64)
    X, Y = text[:-1], text[1:]  # 63 steps; 3 streams of M = 21; chunks of 6, 6, 6, 3
    model = _make(kind)
    ref_params, ref_losses = torch_stream(model, X, Y, 2, 6, 3, opt_kind, hyper)
    opt = getattr(manual_bp.optim, opt_kind)(model.params, **hyper)
    history = fit_stream(model, opt, X, Y, epochs=2, chunk_length=6, n_streams=3, progress=False)
    assert_grads_close(
        model.params, ref_params, tol_torch(np.float64), FLOOR, what=f"{kind} params after training: "
    )
    for e, (h, ref) in enumerate(zip(history, ref_losses)):
        assert_scalar_close(h["loss"], ref, tol_torch(np.float64), f"{kind} epoch {e + 1} loss per step")
    assert opt.step_count == 2 * 4


def test_carrying_the_state_matters():
    """The state crosses chunk boundaries: resetting it per chunk would train differently."""
    rng = np.random.default_rng(2)
    text = rng.integers(0, 5, 40)
    a, b = _make("RNN"), _make("RNN")
    fit_stream(a, SGD(a.params, lr=0.5), text[:-1], text[1:], epochs=1, chunk_length=4, progress=False)
    opt = SGD(b.params, lr=0.5)
    X, Y = text[:-1], text[1:]
    for t0 in range(0, 39, 4):  # the same chunks, each from the zero state
        _, g = b.loss_and_grad(X[t0 : t0 + 4, None], Y[t0 : t0 + 4, None])
        opt.step(g)
    assert not equal(a.params, b.params)


def test_stream_validation_and_determinism():
    rng = np.random.default_rng(3)
    text = rng.integers(0, 5, 80)
    runs = []
    for _ in range(2):
        m = _make("RNN")
        h = fit_stream(
            m,
            Adam(m.params, lr=0.05),
            text[:50],
            text[1:51],
            epochs=3,
            chunk_length=5,
            n_streams=2,
            validation=(text[50:-1], text[51:]),
            progress=False,
        )
        runs.append((m, h))
    assert equal(runs[0][0].params, runs[1][0].params) and runs[0][1] == runs[1][1]
    h = runs[0][1]
    assert h[-1]["loss"] < h[0]["loss"]
    ev = evaluate_stream(runs[0][0], text[50:-1], text[51:], chunk_length=5, n_streams=2)
    assert ev == {"loss": h[-1]["val_loss"], "accuracy": h[-1]["val_accuracy"]}
    assert 0.0 <= ev["accuracy"] <= 1.0


@pytest.mark.parametrize("kind", RECURRENT)
def test_fit_on_sequences_is_the_documented_loop(kind):
    """Recurrent fit: sequences on axis 1, shuffled with default_rng([seed, e]); masks go with them."""
    rng = np.random.default_rng(4)
    T, N, D, K = 5, 9, 3, 2
    X = rng.standard_normal((T, N, D))
    Y = rng.standard_normal((T, N, K))
    mask = np.zeros((T, N), bool)
    mask[-1] = True  # the last step only, as in the adding problem

    def make():
        return getattr(manual_bp, kind)(D, 4, K, loss="squared_error", seed=0)

    net, ref = make(), make()
    opt, ref_opt = SGD(net.params, lr=0.2, momentum=0.9), SGD(ref.params, lr=0.2, momentum=0.9)
    h = fit(
        net, opt, X, Y, mask=mask, epochs=2, batch_size=4, seed=1, validation=(X, Y, mask), progress=False
    )
    for e in range(2):
        perm = np.random.default_rng([1, e]).permutation(N)
        for s in range(0, N, 4):
            idx = perm[s : s + 4]
            _, g = ref.loss_and_grad(X[:, idx], Y[:, idx], mask=mask[:, idx])
            ref_opt.step(g)
    assert equal(net.params, ref.params)
    assert h[-1]["val_accuracy"] is None
    assert_scalar_close(h[-1]["val_loss"], net.loss(X, Y, mask=mask), 1e-14, "val_loss")
    with pytest.raises(ValueError, match="X and Y must be .T, N, ...."):
        fit(net, opt, X, Y[:, :3], epochs=1, progress=False)


def test_recurrent_accuracy_counts_unmasked_steps():
    m = _make("RNN")
    rng = np.random.default_rng(5)
    X = rng.integers(0, 5, (6, 3))
    Y = rng.integers(0, 5, (6, 3))
    mask = rng.random((6, 3)) < 0.5
    mask[0, 0] = True
    P, _ = m.forward(X)
    hit = P.argmax(-1) == Y
    assert accuracy(m, X, Y, mask) == hit[mask].mean()
    assert accuracy(m, X, Y) == hit.mean()


# ------------------------------------------------------------------------------------------ the loop cost
def count_forward_passes(model, monkeypatch):
    """Count the model's forward passes (every loss, loss_and_grad, forward and jvp runs exactly one)."""
    calls = []
    inner = model._forward

    def counted(*args, **kwargs):
        calls.append(1)
        return inner(*args, **kwargs)

    monkeypatch.setattr(model, "_forward", counted)
    return calls


def recurrent_data(T=5, N=7, D=3, K=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((T, N, D)), rng.integers(0, K, (T, N))


@pytest.mark.parametrize("kind", RECURRENT)
def test_fit_validates_without_a_forward_pass_and_evaluates_with_one_per_batch(kind, monkeypatch):
    """One forward pass per update, one per evaluation batch: no extra pass over the data to validate it."""
    m = RECURRENT_MODELS[kind](3, 4, 4, seed=0)
    X, Y = recurrent_data()
    calls = count_forward_passes(m, monkeypatch)
    fit(m, SGD(m.params, lr=0.1), X, Y, epochs=2, batch_size=3)  # 3 batches of 3, 3, 1 sequences
    assert len(calls) == 2 * 3
    calls.clear()
    fit(m, SGD(m.params, lr=0.1), X, Y, epochs=1, batch_size=3, validation=(X, Y), eval_train=True)
    assert len(calls) == 3 + 1 + 1  # updates, then one evaluation batch each for train and validation
    calls.clear()
    ev = evaluate(m, X, Y, batch_size=2)
    assert len(calls) == 4
    assert ev["loss"] == pytest.approx(m.loss(X, Y), rel=1e-14)
    P, _ = m.forward(X)
    assert ev["accuracy"] == np.mean(P.argmax(-1) == Y)


def test_mlp_fit_validates_without_a_forward_pass(monkeypatch):
    net = MLP([2, 3, 1], "tanh", "sigmoid", "squared_error", seed=0)
    calls = count_forward_passes(net, monkeypatch)
    fit(net, SGD(net.params, lr=0.1), XOR_X, XOR_Y, epochs=3, batch_size=3)
    assert len(calls) == 3 * 2
    calls.clear()
    evaluate(net, XOR_X, XOR_Y, batch_size=3)
    assert len(calls) == 2


@pytest.mark.parametrize("kind", RECURRENT)
def test_evaluate_stream_runs_one_forward_pass_per_chunk_and_carries_the_state(kind, monkeypatch):
    m = RECURRENT_MODELS[kind](6, 5, 6, seed=2)
    text = np.random.default_rng(3).integers(0, 6, 41)
    ev = evaluate_stream(m, text[:-1], text[1:], chunk_length=4, n_streams=2)  # M = 20: 5 chunks
    calls = count_forward_passes(m, monkeypatch)
    assert evaluate_stream(m, text[:-1], text[1:], chunk_length=4, n_streams=2) == ev
    assert len(calls) == 5
    whole = batchify(text[:-1], 2), batchify(text[1:], 2)
    E, P = m.loss(*whole, return_outputs=True)  # one pass over all 20 steps = the carried chunks
    assert ev["loss"] == pytest.approx(E / 20, rel=1e-13)
    assert ev["accuracy"] == np.mean(P.argmax(-1) == whole[1])


@pytest.mark.parametrize("kind", RECURRENT)
def test_fit_leaves_nothing_on_the_model(kind):
    import copy
    import pickle

    m = RECURRENT_MODELS[kind](3, 4, 4, seed=0)
    attrs = set(vars(m))
    X, Y = recurrent_data()
    fit(m, SGD(m.params, lr=0.1), X, Y, epochs=1, batch_size=3)
    assert set(vars(m)) == attrs
    assert pickle.loads(pickle.dumps(m)).loss(X, Y) == copy.deepcopy(m).loss(X, Y) == m.loss(X, Y)


def test_batch_first_recurrent_data_is_rejected_before_any_update():
    m = RECURRENT_MODELS["GRU"](3, 4, 4, seed=0)
    X, Y = recurrent_data(T=5, N=7)
    mask = np.ones((5, 7), dtype=bool)
    opt = SGD(m.params, lr=0.1)
    before = snapshot(m.params)
    with pytest.raises(ValueError, match=r"X has shape \(7, 5, 3\), batch-first against mask \(T=5, N=7\)"):
        fit(m, opt, X.swapaxes(0, 1), Y.T, epochs=1, mask=mask)
    assert equal(m.params, before) and opt.step_count == 0


def test_library_training_prints_nothing_by_default(capsys):
    net = MLP([2, 3, 1], "tanh", "sigmoid", "squared_error", seed=0)
    fit(net, SGD(net.params, lr=0.1), XOR_X, XOR_Y, epochs=2, batch_size=2)
    m = RECURRENT_MODELS["RNN"](6, 5, 6, seed=4)
    text = np.arange(30) % 6
    fit_stream(m, SGD(m.params, lr=0.1), text[:-1], text[1:], epochs=1, chunk_length=5,
               validation=(text[:-1], text[1:]))
    assert capsys.readouterr() == ("", "")


def test_a_progress_object_sees_every_batch_and_epoch():
    events = []

    class Recorder:
        def start(self, epoch, epochs, total):
            events.append(("start", epoch, epochs, total))

        def update(self, done, loss):
            events.append(("update", done))

        def end(self, record):
            events.append(("end", record["epoch"]))

    net = MLP([2, 3, 1], "tanh", "sigmoid", "squared_error", seed=0)
    fit(net, SGD(net.params, lr=0.1), XOR_X, XOR_Y, epochs=2, batch_size=3, progress=Recorder())
    assert events == [("start", 1, 2, 2), ("update", 1), ("update", 2), ("end", 1),
                      ("start", 2, 2, 2), ("update", 1), ("update", 2), ("end", 2)]


def test_validation_errors_name_the_data_set():
    net = MLP([2, 3, 1], "tanh", "sigmoid", "squared_error", seed=0)
    with pytest.raises(ValueError, match=r"^validation: X must have shape \(N, n0=2\)"):
        fit(net, SGD(net.params, lr=0.1), XOR_X, XOR_Y, epochs=1, validation=(XOR_X[:, :1], XOR_Y))
    with pytest.raises(ValueError, match=r"^X, Y: Y must be finite"):
        fit(net, SGD(net.params, lr=0.1), XOR_X, XOR_Y * np.nan, epochs=1)


@pytest.mark.parametrize("kind", RECURRENT)
def test_batch_first_models_train_as_their_time_major_twins(kind):
    """fit slices a batch-first model's data along axis 0, fit_stream hands it (N, T) chunks: same numbers."""
    X, Y = recurrent_data(T=5, N=7)
    cls = RECURRENT_MODELS[kind]
    tm, bf = cls(3, 4, 4, seed=0), cls(3, 4, 4, seed=0, batch_first=True)
    h1 = fit(tm, SGD(tm.params, lr=0.1), X, Y, epochs=2, batch_size=3, validation=(X, Y))
    h2 = fit(bf, SGD(bf.params, lr=0.1), X.swapaxes(0, 1), Y.T, epochs=2, batch_size=3,
             validation=(X.swapaxes(0, 1), Y.T))
    assert h1 == h2
    assert equal(tm.params, bf.params)
    text = np.random.default_rng(3).integers(0, 3, 61)
    s1 = fit_stream(tm, SGD(tm.params, lr=0.1), text[:-1], text[1:], epochs=1, chunk_length=4, n_streams=3,
                    validation=(text[:-1], text[1:]))
    s2 = fit_stream(bf, SGD(bf.params, lr=0.1), text[:-1], text[1:], epochs=1, chunk_length=4, n_streams=3,
                    validation=(text[:-1], text[1:]))
    assert s1 == s2 and equal(tm.params, bf.params)


def test_evaluation_runs_without_dropout_and_restores_training_mode():
    m = RECURRENT_MODELS["LSTM"](3, 4, 4, seed=0, num_layers=2, dropout=0.5)
    X, Y = recurrent_data()
    assert m.training
    ev = evaluate(m, X, Y)
    assert m.training  # back in training mode
    m.eval()
    assert ev["loss"] == m.loss(X, Y)  # what the model computes with dropout off
    m.train()
    fit(m, SGD(m.params, lr=0.1), X, Y, epochs=1, batch_size=7, validation=(X, Y))
    assert m.training
