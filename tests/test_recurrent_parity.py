"""RNN, LSTM and GRU with torch's options (num_layers, bidirectional, batch_first, bias, dropout, proj_size,
packed lengths; the bare module's vjp and jvp) against torch's own modules and finite differences.

The oracle (``manual_bp.reference.recurrent``) loads our weights into ``nn.RNN/LSTM/GRU`` by ``state_dict``
with random non-zero values in both of torch's biases, feeds padded batches through
``pack_padded_sequence(enforce_sorted=False)``, applies given dropout masks between one torch module per
layer, and differentiates with autograd, ``torch.func.jvp`` and torch's forward-mode AD.
"""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from manual_bp.reference.recurrent import (
    build_recurrent,
    recurrent_forward,
    recurrent_jvp,
    recurrent_loss_and_grad,
    recurrent_module_jvp,
    recurrent_module_vjp,
    recurrent_vanishing,
)

from manual_bp import GRU, LSTM, RNN, vanishing_gradients
from manual_bp.harness import off_kink, randomize_params, recurrent_problem
from tests.helpers import (
    FLOOR_FD,
    FLOOR_TORCH,
    TOL_FD,
    assert_grads_close,
    assert_scalar_close,
    fd_grads,
    loss_at,
    tol_torch,
)
from tests.strategies import DrawPick

CLASSES = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}


def examples(n):
    """``n`` examples under the default ``ci`` profile (50), proportionally more under dev and thorough."""
    return max(n, n * settings.default.max_examples // 50)


@st.composite
def stacked_cases(draw, dtypes=(np.float64,), max_T=5, max_N=3, max_size=4, max_layers=3, truncate=True,
                  losses=("cross_entropy", "squared_error")):
    """A harness problem with torch's options drawn (dropout masks and batch-first included)."""
    return recurrent_problem(DrawPick(draw), dtypes=dtypes, max_T=max_T, max_N=max_N, max_size=max_size,
                             truncate=truncate, stacked=True, max_layers=max_layers, dropout=True,
                             batch_first=True, losses=losses)


def call_kwargs(case, truncate=True):
    """``loss_and_grad``'s keyword arguments: the problem's, and its lengths and dropout masks."""
    return {**case.kwargs(truncate=truncate), **case.extra}


def safe(case):
    """Off relu's kink with the problem's own lengths and dropout masks."""
    m = case.model
    extra = {k: v for k, v in case.extra.items() if k in ("lengths", "dropout_masks")}
    return m.kink_distance(case.X, h0=case.h0, **extra) > 1e-4 and off_kink(case)


def describe(case):
    m = case.model
    return f"{m!r} lengths={case.extra.get('lengths')} truncate={case.truncate}: "


def pinned(kind="LSTM", T=5, N=3, D=3, H=4, K=3, seed=0, ids=False, lengths=True, masks=True, head=True,
           **kw):
    """A fixed model with non-zero parameters, its data in its layout, h0 in torch's layout, lengths and
    dropout masks."""
    m = CLASSES[kind](D, H, K if head else None, seed=seed, **kw)
    rng = np.random.default_rng(seed)
    m.params = randomize_params(m.params, rng)
    X = rng.integers(0, D, (T, N)) if ids else rng.standard_normal((T, N, D))
    Y = rng.integers(0, K, (T, N))
    if m.batch_first:
        X, Y = np.swapaxes(X, 0, 1).copy(), Y.T.copy()
    h0 = m.public_state(tuple(rng.standard_normal(p.shape) * 0.5 for p in m.state_parts(None, N)))
    extra = {}
    if lengths:
        extra["lengths"] = rng.permutation(np.r_[T, rng.integers(1, T + 1, N - 1)])  # one full, any order
    if masks and m.num_layers > 1:
        extra["dropout_masks"] = m.draw_dropout_masks(T, N)
    return m, X, Y, h0, extra


# ------------------------------------------------------------------------------------------ loss and grads
def grads_equal_torch(case):
    m = case.model
    kw = call_kwargs(case)
    E, g = m.loss_and_grad(case.X, case.Y, **kw)
    E_t, g_t = recurrent_loss_and_grad(m, case.X, case.Y, dtype=np.float64, **kw)
    tol = tol_torch(m.dtype)
    assert_scalar_close(E, E_t, tol, describe(case) + "loss")
    assert set(g) == set(m.params) | {f"{p}0" for p in m.STATES}
    assert all(v.dtype == m.dtype for v in g.values())
    assert_grads_close(g, g_t, tol, FLOOR_TORCH, what=describe(case))


@settings(max_examples=examples(10))
@given(data=st.data())
def test_stacked_grads_equal_torch(data):
    case = data.draw(stacked_cases(dtypes=(np.float64, np.float32)), label="case")
    grads_equal_torch(case)


@pytest.mark.parametrize("kind", list(CLASSES))
def test_two_layer_bidirectional_padded_grads_equal_torch(kind):
    """The issue's model: 2 layers, both directions, batch-first, padded, dropout masks, both biases (LSTM
    projected; the RNN and GRU read token ids)."""
    kw = {"proj_size": 2} if kind == "LSTM" else {}
    m, X, Y, h0, extra = pinned(kind, ids=kind != "LSTM", num_layers=2, bidirectional=True, batch_first=True,
                                dropout=0.25, **kw)
    E, g = m.loss_and_grad(X, Y, h0=h0, **extra)
    E_t, g_t = recurrent_loss_and_grad(m, X, Y, h0=h0, **extra)
    assert_scalar_close(E, E_t, 1e-10, f"{kind} loss")
    assert_grads_close(g, g_t, 1e-10, FLOOR_TORCH, what=f"{kind}: ")


def grads_equal_finite_differences(case):
    m = case.model
    kw = call_kwargs(case, truncate=False)
    _, g = m.loss_and_grad(case.X, case.Y, **kw)
    point = {k: v.astype(np.float64) for k, v in m.params.items()}
    point.update({f"{p}0": v for p, v in zip(m.STATES, m.state_parts(case.h0, case.X.shape[m.batch_axis]))})
    numeric = fd_grads(loss_at(m, case.X, case.Y, **{k: v for k, v in kw.items() if k != "h0"}), point)
    assert_grads_close(g, numeric, TOL_FD, FLOOR_FD, what=describe(case) + "vs finite differences: ")


@settings(max_examples=examples(2))
@given(data=st.data())
def test_stacked_grads_equal_finite_differences(data):
    case = data.draw(stacked_cases(max_T=3, max_N=2, max_size=2, max_layers=2, truncate=False), label="case")
    assume(safe(case))
    grads_equal_finite_differences(case)


def test_two_layer_bidirectional_projected_lstm_equals_finite_differences():
    m, X, Y, h0, extra = pinned("LSTM", T=3, N=2, D=1, H=2, K=2, num_layers=2, bidirectional=True,
                                batch_first=True, dropout=0.5, proj_size=1)
    _, g = m.loss_and_grad(X, Y, h0=h0, **extra)
    point = {**m.params, "h0": h0[0], "c0": h0[1]}
    # every path: through the reversal and layer 1 back to layer 0, the projection, the states, the head
    keys = ["U", "Wr_reverse", "b_reverse", "W_l1_reverse", "U_l1", "V", "h0", "c0"]
    numeric = fd_grads(loss_at(m, X, Y, **extra), point, keys=keys)
    assert_grads_close(g, numeric, TOL_FD, FLOOR_FD, what="2-layer bidirectional projected LSTM: ", keys=keys)


# ------------------------------------------------------------------------------------------ the bare module
def module_vjp_and_outputs_equal_torch(case, seed):
    """``forward`` and ``vjp`` of the bare module against torch's module and ``torch.autograd.grad``."""
    c = case.model
    m = type(c)(**{**c.config(), "output_size": None})
    m.params = {k: v for k, v in c.params.items() if k not in ("V", "c")}
    extra = {k: v for k, v in case.extra.items() if k in ("lengths", "dropout_masks")}
    h0 = c.to_torch_state(case.h0, case.X.shape[m.batch_axis]) if case.h0 is not None else None
    out, h_n = m.forward(case.X, h0=h0, **extra)
    out_t, h_n_t = recurrent_forward(m, case.X, h0=h0, **extra)
    tol = tol_torch(m.dtype)
    np.testing.assert_allclose(out, out_t, rtol=tol, atol=tol * 1e-2)
    for a, b in zip(m.state_parts(h_n), m.state_parts(h_n_t)):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * 1e-2)
        assert a.ndim == 3 and a.shape[0] == m.num_layers * m.num_directions
    rng = np.random.default_rng(seed)
    d_out = rng.standard_normal(out.shape)
    d_hn = m.public_state(tuple(rng.standard_normal(p.shape) for p in m.state_parts(h_n)))
    g = m.vjp(case.X, d_out, d_hn, h0=h0, **extra)
    g_t = recurrent_module_vjp(m, case.X, d_out, d_hn, h0=h0, dtype=np.float64, **extra)
    assert set(g) == set(g_t)
    assert_grads_close(g, g_t, tol, FLOOR_TORCH, what=describe(case) + "vjp: ")


@settings(max_examples=examples(6))
@given(data=st.data())
def test_module_vjp_equals_torch_autograd_grad(data):
    case = data.draw(stacked_cases(dtypes=(np.float64, np.float32)), label="case")
    module_vjp_and_outputs_equal_torch(case, data.draw(st.integers(0, 2**32 - 1), label="seed"))


def test_module_outputs_are_zero_past_the_end_and_h_n_is_taken_at_the_end():
    m, X, _, h0, extra = pinned("GRU", T=6, N=3, head=False, num_layers=2, bidirectional=True, masks=False)
    lengths = np.array([2, 6, 4])
    out, h_n = m.forward(X, h0=h0, lengths=lengths)
    for n, L in enumerate(lengths):
        assert not out[L:, n].any()
        alone, h_alone = m.forward(X[:L, n : n + 1], h0=h0[:, n : n + 1])  # the sequence alone, unpadded
        np.testing.assert_allclose(out[:L, n : n + 1], alone, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(h_n[:, n : n + 1], h_alone, rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------------------------------------ forward mode
def jvp_equals_torch(case, seed):
    m = case.model
    rng = np.random.default_rng(seed)
    kw = call_kwargs(case, truncate=False)
    tangents = {k: rng.standard_normal(v.shape) for k, v in m.params.items()}
    for p, v in zip(m.STATES, m.state_parts(case.h0, case.X.shape[m.batch_axis])):
        tangents[f"{p}0"] = rng.standard_normal(v.shape)
    E, dE = m.jvp(case.X, case.Y, tangents, **kw)
    _, g = m.loss_and_grad(case.X, case.Y, **kw)
    scale = sum(float(np.abs(g[k] * tangents[k]).sum()) for k in tangents)
    dot = sum(float(np.sum(g[k] * tangents[k])) for k in tangents)
    assert abs(dE - dot) <= 1e-10 * max(scale, 1e-12), f"{describe(case)}jvp {dE!r} vs grads·tangents {dot!r}"
    E_t, dE_t = recurrent_jvp(m, case.X, case.Y, tangents, **kw)
    assert_scalar_close(E, E_t, 1e-10, "loss")
    assert abs(dE - dE_t) <= 1e-10 * max(scale, 1e-12), f"{describe(case)}jvp {dE!r} vs torch {dE_t!r}"


@settings(max_examples=examples(4))
@given(data=st.data())
def test_jvp_equals_torch_func_jvp(data):
    case = data.draw(stacked_cases(truncate=False), label="case")
    jvp_equals_torch(case, data.draw(st.integers(0, 2**32 - 1), label="seed"))


@pytest.mark.parametrize("kind", list(CLASSES))
def test_module_jvp_equals_torch_forward_mode(kind):
    kw = {"proj_size": 3} if kind == "LSTM" else {}
    m, X, _, h0, extra = pinned(kind, head=False, num_layers=2, bidirectional=True, batch_first=True,
                                dropout=0.4, **kw)
    rng = np.random.default_rng(1)
    tangents = {k: rng.standard_normal(v.shape) for k, v in m.params.items()}
    for p, v in zip(m.STATES, m.state_parts(h0)):
        tangents[f"{p}0"] = rng.standard_normal(v.shape)
    for lengths in (None, extra["lengths"]):
        (out, h_n), (d_out, d_hn) = m.jvp(X, tangents, h0=h0, lengths=lengths,
                                          dropout_masks=extra["dropout_masks"])
        (_, _), (d_out_t, d_hn_t) = recurrent_module_jvp(m, X, tangents, h0=h0, lengths=lengths,
                                                         dropout_masks=extra["dropout_masks"])
        np.testing.assert_allclose(d_out, d_out_t, rtol=1e-10, atol=1e-12)
        for a, b in zip(m.state_parts(d_hn), m.state_parts(d_hn_t)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------ truncation
@pytest.mark.parametrize("kind", list(CLASSES))
def test_truncation_with_layers_equals_a_detached_torch_stack(kind):
    """E_t's window spans every layer (TR2): torch's stack run from every layer's detached state."""
    kw = {"proj_size": 2} if kind == "LSTM" else {}
    m, X, Y, h0, extra = pinned(kind, T=5, num_layers=3, dropout=0.3, **kw)
    _, full = m.loss_and_grad(X, Y, h0=h0, **extra)
    for k in (2, 4):
        _, g = m.loss_and_grad(X, Y, h0=h0, truncate=k, **extra)
        if k < 4:
            _, g_t = recurrent_loss_and_grad(m, X, Y, h0=h0, truncate=k, **extra)
            assert_grads_close(g, g_t, 1e-10, FLOOR_TORCH, what=f"{kind} 3 layers truncate={k}: ")
            assert not np.allclose(g["W"], full["W"], rtol=1e-6, atol=0), f"truncate={k} equals full BPTT"
        else:
            assert all(np.array_equal(g[key], full[key]) for key in g), "truncate >= T-1 is full BPTT"


# ------------------------------------------------------------------------------------------ vanishing
@pytest.mark.parametrize("kind", ["RNN", "LSTM"])
def test_vanishing_with_layers_equals_torch_retain_grad(kind):
    kw = {"proj_size": 2} if kind == "LSTM" else {}
    m, X, Y, h0, extra = pinned(kind, T=6, lengths=False, num_layers=2, dropout=0.2, **kw)
    ours = vanishing_gradients(m, X, Y, h0=h0, **extra)
    theirs = recurrent_vanishing(m, X, Y, h0=h0, **extra)
    assert set(ours) == set(theirs) == set(m.STATES)
    for part in ours:
        scale = max(float(np.max(theirs[part])), 1e-12)
        np.testing.assert_allclose(ours[part], theirs[part], rtol=0, atol=1e-10 * scale)


# ------------------------------------------------------------------------------------------ dropout
@pytest.mark.parametrize("kind", list(CLASSES))
def test_dropout_sits_between_layers_as_in_torch_modules_training_mode(kind):
    """At p = 1 torch's own module in training mode drops every output between layers and nothing else: our
    model in training mode (its masks drawn) must give the same numbers."""
    m, X, _, h0, _ = pinned(kind, head=False, lengths=False, num_layers=3, bidirectional=True, dropout=1.0)
    core, _ = build_recurrent(m, split_bias=True)
    core.train(True)
    x = torch.as_tensor(X)
    state = m.to_torch_state(h0)
    hx = tuple(torch.as_tensor(s) for s in state) if kind == "LSTM" else torch.as_tensor(state)
    out_t, _ = core(x, hx)
    out, _ = m.forward(X, h0=h0)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-12, atol=1e-14)
    m.eval()  # and without dropout it is another function
    assert not np.allclose(m.forward(X, h0=h0)[0], out)


def test_the_same_dropout_masks_give_the_same_numbers_and_eval_runs_without():
    m, X, Y, h0, extra = pinned("GRU", num_layers=3, dropout=0.5, lengths=False)
    E1, g1 = m.loss_and_grad(X, Y, h0=h0, **extra)
    E2, g2 = m.loss_and_grad(X, Y, h0=h0, **extra)
    assert E1 == E2 and all(np.array_equal(g1[k], g2[k]) for k in g1)
    E3 = m.loss(X, Y, h0=h0)  # training mode: fresh masks from the model's generator
    E4 = m.loss(X, Y, h0=h0)
    assert len({E1, E3, E4}) == 3
    no_dropout = GRU(**{**m.config(), "dropout": 0.0})
    no_dropout.params = m.params
    assert m.eval().loss(X, Y, h0=h0) == no_dropout.loss(X, Y, h0=h0)
    assert m.train().training and not m.eval().training


# ------------------------------------------------------------------------------------------ equivalences
@pytest.mark.parametrize("kind", list(CLASSES))
def test_full_lengths_and_batch_first_change_nothing(kind):
    """lengths = T everywhere is no packing, and a batch-first model is the time-major one on transposed
    data: bit for bit."""
    m, X, Y, h0, extra = pinned(kind, lengths=False, num_layers=2, bidirectional=True, dropout=0.3)
    E, g = m.loss_and_grad(X, Y, h0=h0, **extra)
    E_full, g_full = m.loss_and_grad(X, Y, h0=h0, lengths=np.full(X.shape[1], X.shape[0]), **extra)
    assert E_full == E and all(np.array_equal(g_full[k], g[k]) for k in g)
    bf = type(m)(**{**m.config(), "batch_first": True})
    bf.params = m.params
    masks = [np.swapaxes(d, 0, 1) for d in extra["dropout_masks"]]
    E_bf, g_bf = bf.loss_and_grad(np.swapaxes(X, 0, 1), Y.T, h0=h0, dropout_masks=masks)
    assert E_bf == E and all(np.array_equal(g_bf[k], g[k]) for k in g)


def test_steps_past_the_end_carry_nothing():
    m, X, Y, h0, extra = pinned("LSTM", num_layers=2, bidirectional=True, proj_size=2)
    lengths = extra["lengths"]
    X2, Y2 = X.copy(), Y.copy()
    for n, L in enumerate(lengths):
        X2[L:, n] = 99.0
        Y2[L:, n] = (Y2[L:, n] + 1) % 3
    E1, g1 = m.loss_and_grad(X, Y, h0=h0, **extra)
    E2, g2 = m.loss_and_grad(X2, Y2, h0=h0, **extra)
    assert E1 == E2 and all(np.array_equal(g1[k], g2[k]) for k in g1)


# ------------------------------------------------------------------------------------------ names, config
def test_parameter_names_and_shapes_follow_one_pattern():
    m = LSTM(3, 5, 2, num_layers=2, bidirectional=True, proj_size=4)
    shapes = {k: v.shape for k, v in m.params.items()}
    assert shapes == {
        "U": (20, 3), "W": (20, 4), "b": (20,), "Wr": (4, 5),
        "U_reverse": (20, 3), "W_reverse": (20, 4), "b_reverse": (20,), "Wr_reverse": (4, 5),
        "U_l1": (20, 8), "W_l1": (20, 4), "b_l1": (20,), "Wr_l1": (4, 5),
        "U_l1_reverse": (20, 8), "W_l1_reverse": (20, 4), "b_l1_reverse": (20,), "Wr_l1_reverse": (4, 5),
        "V": (2, 8), "c": (2,)}
    assert m.param_names()["Wr_l1_reverse"] == "weight_hr_l1_reverse"
    assert m.param_names()["W"] == "weight_hh_l0" and m.param_names()["V"] == "head.weight"
    assert set(GRU(3, 4, None, bias=False, num_layers=2).params) == {"U", "W", "U_l1", "W_l1"}
    assert set(GRU(3, 4, 2).params) == {"U", "W", "b", "bh", "V", "c"}


@pytest.mark.parametrize("kind", list(CLASSES))
def test_config_rebuilds_a_layered_model_and_a_default_config_is_unchanged(kind):
    kw = {"proj_size": 2} if kind == "LSTM" else {}
    m = CLASSES[kind](3, 4, 2, num_layers=3, bidirectional=True, batch_first=True, bias=False, dropout=0.1,
                      seed=4, **kw)
    copy = CLASSES[kind](**m.config())
    assert copy.config() == m.config() and repr(copy) == repr(m)
    assert all(np.array_equal(copy.params[k], m.params[k]) for k in m.params)
    plain = CLASSES[kind](3, 4, 2, seed=0).config()
    assert set(plain) == {"input_size", "hidden_size", "output_size", "loss", "dtype", "seed"} | (
        {"nonlinearity"} if kind == "RNN" else set())
    assert CLASSES[kind](3, 4).output_size is None  # torch's positional (input_size, hidden_size): the module


# ------------------------------------------------------------------------------------------ bad input
def test_bad_options_and_arguments_raise_and_leave_params_unchanged():
    for cls in (RNN, GRU):
        with pytest.raises(TypeError, match="unexpected keyword argument 'proj_size'"):
            cls(3, 4, 2, proj_size=2)
    with pytest.raises(ValueError, match=r"proj_size must be smaller than hidden_size=4 \(as torch\); got 4"):
        LSTM(3, 4, 2, proj_size=4)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\]; got 1.5"):
        LSTM(3, 4, 2, dropout=1.5)
    with pytest.raises(ValueError, match="num_layers must be >= 1; got 0"):
        LSTM(3, 4, 2, num_layers=0)
    with pytest.raises(TypeError, match="bidirectional must be True or False"):
        LSTM(3, 4, 2, bidirectional=1)
    m, X, Y, h0, extra = pinned("LSTM", num_layers=2, bidirectional=True, dropout=0.2)
    before = {k: v.copy() for k, v in m.params.items()}
    T, N = X.shape[:2]
    bad = [
        ({"lengths": [1, 2]}, ValueError, r"lengths must have shape \(N=3,\); got \(2,\)"),
        ({"lengths": [1, 0, 2]}, ValueError, r"lengths must lie in \[1, T=5\]; got 0 at index 1"),
        ({"lengths": [1, 6, 2]}, ValueError, r"lengths must lie in \[1, T=5\]; got 6 at index 1"),
        ({"lengths": [1.0, 2.0, 3.0]}, TypeError, "lengths must hold integers"),
        ({"dropout_masks": []}, TypeError, r"dropout_masks must be a list of num_layers-1=1 arrays"),
        ({"dropout_masks": [np.ones((T, N, 7), bool)]}, ValueError,
         r"dropout_masks\[0\] must have shape \(T=5, N=3, D\*H_out=8\); got \(5, 3, 7\)"),
        ({"dropout_masks": [np.full((T, N, 8), 0.5)]}, ValueError,
         r"dropout_masks\[0\] must hold booleans or 0/1"),
        ({"h0": (np.zeros((3, N, 4)), None)}, ValueError,
         r"h0 must have shape \(D\*num_layers=4, N=3, H=4\); got \(3, 3, 4\)"),
        ({"h0": np.zeros((4, N, 4))}, TypeError, r"h0 must be None or a tuple \(h0, c0\)"),
        ({"truncate": 2}, ValueError, "truncate applies to one-direction models"),
    ]
    for kw, exc, message in bad:
        with pytest.raises(exc, match=message):
            m.loss_and_grad(X, Y, **kw)
    with pytest.raises(ValueError, match="vanishing_gradients needs a one-direction model"):
        vanishing_gradients(m, X, Y)
    bare = LSTM(3, 4)
    for call in (lambda: bare.loss(X, Y), lambda: bare.loss_and_grad(X, Y), lambda: bare.validate(X, Y)):
        with pytest.raises(TypeError, match="needs an output layer: this LSTM has output_size=None"):
            call()
    with pytest.raises(ValueError, match=r"d_out must have shape \(T=5, N=3, D\*H_out=4\)"):
        bare.vjp(X, np.zeros((T, N, 3)))
    assert all(np.array_equal(m.params[k], before[k]) for k in before)


def test_a_layered_model_survives_a_checkpoint(tmp_path):
    from manual_bp import checkpoint

    m = LSTM(3, 4, 2, num_layers=2, bidirectional=True, proj_size=3, batch_first=True, dropout=0.2, seed=1)
    m.params = randomize_params(m.params, np.random.default_rng(0))
    checkpoint.save(tmp_path / "m.npz", m)
    back = checkpoint.load(tmp_path / "m.npz").model
    assert type(back) is LSTM and back.config() == m.config()
    assert set(back.params) == set(m.params)
    assert all(np.array_equal(back.params[k], m.params[k]) for k in m.params)


def test_the_stacked_benchmark_sides_do_equal_work():
    """benchmarks/stacked.py times ours against nn.LSTM only after both agree; here on a small case."""
    from benchmarks.stacked import Ours, Torch, check_equal_work

    spec = {"T": 3, "N": 2, "D": 3, "H": 4, "K": 3, "num_layers": 2, "dtype": "float32"}
    assert check_equal_work(spec)["ok"]
    Ours(spec).step()
    Torch(spec).step()
