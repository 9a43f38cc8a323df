"""The recurrent models' methods for long sequences and second order are their modules' functions, and the
training loops reach them: ``loss_and_grad(snapshots=)``, ``rtrl``, ``hvp``, ``gvp``, ``gvp_operator``,
``fit_stream(snapshots=)`` and ``fit`` with ``HessianFree``."""

import numpy as np
import pytest

from manual_bp import SGD, HessianFree, fit, fit_stream, long_bptt, recurrent_second_order
from manual_bp.models import RECURRENT_MODELS

KINDS = list(RECURRENT_MODELS)


def problem(kind, T=9, N=3, seed=0):
    rng = np.random.default_rng(seed)
    m = RECURRENT_MODELS[kind](3, 4, 3, seed=seed)
    X, Y = rng.standard_normal((T, N, 3)), rng.integers(0, 3, (T, N))
    h0 = m.public_state(tuple(rng.standard_normal((N, 4)) for _ in m.STATES))
    mask = rng.uniform(size=(T, N)) < 0.8
    return m, X, Y, h0, mask, rng


def same(a, b):
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("snapshots", ["sqrt", 1, 3])
def test_snapshots_in_loss_and_grad_is_checkpointed_bptt(kind, snapshots):
    m, X, Y, h0, mask, _ = problem(kind)
    E, g, s = m.loss_and_grad(X, Y, h0=h0, mask=mask, snapshots=snapshots, return_state=True)
    E2, g2, s2 = long_bptt.loss_and_grad_checkpointed(m, X, Y, h0=h0, mask=mask, snapshots=snapshots,
                                                     return_state=True)
    assert E == E2
    same(g, g2)
    _, full = m.loss_and_grad(X, Y, h0=h0, mask=mask)
    for k in full:
        np.testing.assert_allclose(g[k], full[k], rtol=1e-13, atol=1e-15, err_msg=k)
    with pytest.raises(ValueError, match="truncate is not supported with snapshots"):
        m.loss_and_grad(X, Y, truncate=2, snapshots=2)


@pytest.mark.parametrize("kind", KINDS)
def test_rtrl_hvp_gvp_methods_are_the_functions(kind):
    m, X, Y, h0, mask, rng = problem(kind)
    E, g = m.rtrl(X, Y, h0=h0, mask=mask)
    E2, g2 = long_bptt.rtrl(m, X, Y, h0=h0, mask=mask)
    assert E == E2
    same(g, g2)
    v = {k: rng.standard_normal(p.shape) for k, p in m.params.items()}
    for name, kw in (("hvp", {}), ("gvp", {"structural_damping": 0.3})):
        _, _, ours = getattr(m, name)(X, Y, v, h0=h0, mask=mask, **kw)
        _, _, theirs = getattr(recurrent_second_order, name)(m, X, Y, v, h0=h0, mask=mask, **kw)
        same(ours, theirs)
    _, _, product = m.gvp_operator(X, Y, h0=h0, mask=mask)
    same(product(v), m.gvp(X, Y, v, h0=h0, mask=mask)[2])


@pytest.mark.parametrize("kind", KINDS)
def test_fit_stream_with_snapshots_trains_as_without(kind):
    text = np.random.default_rng(3).integers(0, 5, 121)

    def run(**kw):
        m = RECURRENT_MODELS[kind](5, 4, 5, seed=1)
        history = fit_stream(m, SGD(m.params, lr=0.3), text[:-1], text[1:], epochs=2, chunk_length=20,
                             n_streams=2, **kw)
        return m, history

    m1, h1 = run()
    m2, h2 = run(snapshots="sqrt")
    for a, b in zip(h1, h2):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-12)
    for k in m1.params:
        np.testing.assert_allclose(m1.params[k], m2.params[k], rtol=1e-11, atol=1e-13, err_msg=k)
    with pytest.raises(ValueError, match="snapshots and truncate do not combine"):
        run(snapshots=2, truncate=3)


def test_fit_trains_an_rnn_with_structurally_damped_hessian_free():
    rng = np.random.default_rng(0)
    m = RECURRENT_MODELS["RNN"](2, 6, 1, loss="squared_error", seed=0)
    X = rng.standard_normal((10, 40, 2))
    Y = np.cumsum(X[..., :1], axis=0) * 0.3  # a running sum: a real recurrence to learn
    before = m.loss(X, Y)
    opt = HessianFree(m, structural_damping=0.3, max_cg=10)
    history = fit(m, opt, X, Y, epochs=3, batch_size=40)
    assert history[-1]["loss"] < history[0]["loss"] <= before
    assert opt.step_count == 3


def test_mlp_from_torch_to_torch_and_torch_grads_are_methods():
    torch = pytest.importorskip("torch")
    from torch import nn

    from manual_bp import MLP

    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    net = MLP.from_torch(seq, loss="cross_entropy")
    assert type(net) is MLP and net.sizes == [4, 6, 6, 3]
    X, y = torch.randn(7, 4, dtype=torch.float64), torch.randint(0, 3, (7,))
    loss = nn.functional.cross_entropy(seq(X), y)
    loss.backward()
    E, g = net.loss_and_grad(X.numpy(), y.numpy())
    assert abs(E - loss.item()) <= 1e-12
    ours = net.torch_grads(g, seq)
    for name, p in seq.named_parameters():
        np.testing.assert_allclose(ours[name], p.grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=name)
    back = net.to_torch()
    assert torch.equal(back[0].weight, seq[0].weight) and torch.equal(back[4].bias, seq[4].bias)
