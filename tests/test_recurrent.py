"""RNN, LSTM and GRU gradients (BPTT, truncated BPTT, JVP) against torch's own modules and finite differences.

Every property runs for each of the three models (the skeleton is shared, the cells are not). The torch oracle
(``reference/recurrent.py``) computes in float64 even for a float32 model.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from manual_bp.reference import (
    recurrent_forward,
    recurrent_jvp,
    recurrent_loss_and_grad,
    recurrent_train_chunks,
    recurrent_vanishing,
)

from manual_bp import vanishing_gradients
from manual_bp.harness import randomize_params
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
from tests.strategies import (
    RECURRENT_MODELS,
    RecurrentCase,
    ci_examples,
    random_state,
    recurrent_cases,
    recurrent_inputs,
    recurrent_targets,
    relu_safe_recurrent,
)

KINDS = list(RECURRENT_MODELS)


def pinned(kind, T=1, N=1, D=1, H=1, K=2, ids=False, truncate=None, loss="cross_entropy", mask=False, seed=7,
           dtype=np.float64):
    """A fixed small case for ``@example``: the edges T=1, N=1, H=1."""
    model = RECURRENT_MODELS[kind](D, H, K, loss=loss, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    model.params = randomize_params(model.params, rng)
    X = recurrent_inputs(model, T, N, rng, ids)
    Y = recurrent_targets(model, T, N, rng)
    m = (rng.uniform(size=(T, N)) < 0.7) if mask else None
    return RecurrentCase(model, X, Y, random_state(model, N, rng), m, truncate)


def cases(kind, **kw):
    return recurrent_cases(models=(kind,), **kw)


def state_keys(model):
    return [f"{p}0" for p in model.STATES]


PINS = {  # the edges a loop bound gets wrong: T=1, N=1, H=1; and T=2 token ids truncated at 0, SE, masked
    kind: [pinned(kind), pinned(kind, T=2, D=3, ids=True, truncate=0, loss="squared_error", mask=True)]
    for kind in KINDS
}


PIN_IDS = [f"{kind.lower()}-{i}" for kind in KINDS for i in range(len(PINS[kind]))]
PINNED = [pin for kind in KINDS for pin in PINS[kind]]


# -------------------------------------------------------------------------------------------------- vs torch
def grads_equal_torch(case):
    m = case.model
    E, g = m.loss_and_grad(case.X, case.Y, **case.kwargs())
    E_t, g_t = recurrent_loss_and_grad(m, case.X, case.Y, **case.kwargs(), dtype=np.float64)
    tol = tol_torch(m.dtype)
    assert_scalar_close(E, E_t, tol, case.describe() + "loss")
    assert set(g) == set(m.params) | set(state_keys(m))
    for k, v in g.items():
        assert v.dtype == m.dtype, f"{k} has dtype {v.dtype}, model dtype {m.dtype}"
    assert_grads_close(g, g_t, tol, FLOOR_TORCH, what=case.describe())


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_grads_equal_torch(kind, data):
    case = data.draw(cases(kind, dtypes=(np.float64, np.float32)), label="case")
    grads_equal_torch(case)


@pytest.mark.parametrize("case", PINNED, ids=PIN_IDS)
def test_grads_equal_torch_at_the_edges(case):
    grads_equal_torch(case)


def grads_equal_finite_differences(case):
    _, g = case.model.loss_and_grad(case.X, case.Y, **case.kwargs(truncate=False))
    numeric = fd_grads(loss_at(case.model, case.X, case.Y, mask=case.mask), case.fd_point())
    assert_grads_close(g, numeric, TOL_FD, FLOOR_FD, what=case.describe() + "vs finite differences: ")


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=6)
@given(data=st.data())
def test_grads_equal_finite_differences(kind, data):
    case = data.draw(cases(kind, max_T=6, max_N=3, max_size=3, truncate=False), label="case")
    assume(relu_safe_recurrent(case))
    grads_equal_finite_differences(case)


@pytest.mark.parametrize("case", PINNED, ids=PIN_IDS)
def test_grads_equal_finite_differences_at_the_edges(case):
    grads_equal_finite_differences(case)


def jvp_equals_grad_dot_tangent_and_torch_func_jvp(case, seed):
    m = case.model
    rng = np.random.default_rng(seed)
    N = case.X.shape[1]
    tangents = {k: rng.standard_normal(v.shape) for k, v in m.params.items()}
    for name in state_keys(m):
        tangents[name] = rng.standard_normal((N, m.hidden_size))
    E, dE = m.jvp(case.X, case.Y, tangents, h0=case.h0, mask=case.mask)
    _, g = m.loss_and_grad(case.X, case.Y, h0=case.h0, mask=case.mask)
    dot = sum(float(np.sum(g[k] * tangents[k])) for k in tangents)
    scale = sum(float(np.abs(g[k] * tangents[k]).sum()) for k in tangents)
    assert abs(dE - dot) <= 1e-10 * max(scale, 1e-12), (
        f"{case.describe()}jvp {dE!r} vs grads·tangents {dot!r}")
    E_t, dE_t = recurrent_jvp(m, case.X, case.Y, tangents, h0=case.h0, mask=case.mask)
    assert_scalar_close(E, E_t, 1e-10, "loss")
    assert abs(dE - dE_t) <= 1e-10 * max(scale, 1e-12), (
        f"{case.describe()}jvp {dE!r} vs torch.func.jvp {dE_t!r}")


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=ci_examples(15))  # it dots the gradient test_grads_equal_torch checks (50 draws)
@given(data=st.data())
def test_jvp_equals_grad_dot_tangent_and_torch_func_jvp(kind, data):
    case = data.draw(cases(kind, truncate=False), label="case")
    seed = data.draw(st.integers(0, 2**32 - 1), label='seed')
    jvp_equals_grad_dot_tangent_and_torch_func_jvp(case, seed=seed)


@pytest.mark.parametrize("case", PINNED, ids=PIN_IDS)
def test_jvp_equals_grad_dot_tangent_and_torch_func_jvp_at_the_edges(case):
    jvp_equals_grad_dot_tangent_and_torch_func_jvp(case, seed=1)


def forward_and_final_state_equal_torch(case):
    m = case.model
    P, S = m.forward(case.X, h0=case.h0)
    P_t, final_t = recurrent_forward(m, case.X, h0=case.h0)
    T = case.X.shape[0]
    np.testing.assert_allclose(P, P_t, rtol=1e-10, atol=1e-12)
    _, _, final = m.loss_and_grad(case.X, case.Y, h0=case.h0, return_state=True)
    if isinstance(final, tuple):  # LSTM: S is (S, C), the state (h_T, c_T)
        for ours, seq, theirs, first in zip(final, S, final_t, case.h0):
            assert seq.shape == (T + 1,) + ours.shape
            np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
            np.testing.assert_array_equal(seq[-1], ours)
            np.testing.assert_array_equal(seq[0], first)
    else:
        assert S.shape == (T + 1,) + final.shape
        np.testing.assert_allclose(final, final_t, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(S[-1], final)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=ci_examples(15))  # the forward pass's loss is also compared in test_grads_equal_torch
@given(data=st.data())
def test_forward_and_final_state_equal_torch(kind, data):
    case = data.draw(cases(kind, truncate=False, masks=False), label="case")
    forward_and_final_state_equal_torch(case)


@pytest.mark.parametrize("case", PINNED, ids=PIN_IDS)
def test_forward_and_final_state_equal_torch_at_the_edges(case):
    forward_and_final_state_equal_torch(case)


# ------------------------------------------------------------------------------------------------ truncation
def truncate_at_least_T_minus_1_is_full_bptt(case, extra):
    m = case.model
    T = case.X.shape[0]
    k = max(T - 1, 0) + extra
    E, g = m.loss_and_grad(case.X, case.Y, h0=case.h0, mask=case.mask)
    E_k, g_k = m.loss_and_grad(case.X, case.Y, h0=case.h0, mask=case.mask, truncate=k)
    assert E_k == E
    for key in g:
        np.testing.assert_array_equal(g_k[key], g[key], err_msg=f"{key} with truncate={k} >= T-1={T - 1}")


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=ci_examples(20))  # truncation itself: test_grads_equal_torch and the detached graph
@given(data=st.data())
def test_truncate_at_least_T_minus_1_is_full_bptt(kind, data):
    case = data.draw(cases(kind, truncate=False), label="case")
    extra = data.draw(st.integers(0, 3), label='extra')
    truncate_at_least_T_minus_1_is_full_bptt(case, extra=extra)


@pytest.mark.parametrize("case", PINNED, ids=PIN_IDS)
def test_truncate_at_least_T_minus_1_is_full_bptt_at_the_edges(case):
    truncate_at_least_T_minus_1_is_full_bptt(case, extra=0)


@pytest.mark.parametrize("kind", KINDS)
def test_truncation_changes_the_gradient_and_matches_a_detached_torch_graph(kind):
    """k < T-1 drops real paths (the gradient differs from full BPTT) and equals torch's detached graph."""
    case = pinned(kind, T=9, N=3, D=3, H=4, K=3, ids=True, seed=11)
    m = case.model
    _, full = m.loss_and_grad(case.X, case.Y, h0=case.h0)
    for k in range(0, 8):
        _, g = m.loss_and_grad(case.X, case.Y, h0=case.h0, truncate=k)
        _, g_t = recurrent_loss_and_grad(m, case.X, case.Y, h0=case.h0, truncate=k)
        assert_grads_close(g, g_t, 1e-10, FLOOR_TORCH, what=f"{kind} truncate={k}: ")
        assert not np.allclose(g["W"], full["W"], rtol=1e-6, atol=0), f"truncate={k} equals full BPTT"
        # V and c see only E_t's own step: truncation leaves them alone
        np.testing.assert_allclose(g["V"], full["V"], rtol=1e-13, atol=1e-15)


def chunked_training_with_carried_state_equals_torch(case, chunk, k):
    """A long sequence trained in chunks, the final state of each carried (detached) into the next."""
    m = case.model
    T = case.X.shape[0]
    lr = 0.1
    params = {key: v.copy() for key, v in m.params.items()}
    state, losses = case.h0, []
    for a in range(0, T, chunk):
        b = min(T, a + chunk)
        E, g, state = m.loss_and_grad(case.X[a:b], case.Y[a:b], h0=state, truncate=k, return_state=True)
        losses.append(E)
        m.params = {key: m.params[key] - lr * g[key] for key in m.params}
    trained, m.params = m.params, params
    losses_t, params_t, state_t = recurrent_train_chunks(m, case.X, case.Y, chunk, lr, h0=case.h0, truncate=k)
    np.testing.assert_allclose(losses, losses_t, rtol=1e-10, atol=1e-12)
    assert_grads_close(trained, params_t, 1e-10, FLOOR_TORCH, what=f"{m!r} params after chunked SGD: ")
    for ours, theirs in zip(m.state_parts(state), m.state_parts(state_t)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=4)
@given(data=st.data())
def test_chunked_training_with_carried_state_equals_torch(kind, data):
    case = data.draw(cases(kind, max_T=30, max_N=4, max_size=5, truncate=False, masks=False), label="case")
    chunk = data.draw(st.integers(1, 15), label='chunk')
    k = data.draw(st.none() | st.integers(0, 15), label='k')
    chunked_training_with_carried_state_equals_torch(case, chunk=chunk, k=k)


@pytest.mark.parametrize("case", PINNED, ids=PIN_IDS)
def test_chunked_training_with_carried_state_equals_torch_at_the_edges(case):
    chunked_training_with_carried_state_equals_torch(case, chunk=1, k=None)


# -------------------------------------------------------------------------------------------------- vanishing
def vanishing_gradient_norms_equal_torch_retain_grad(case):
    m = case.model
    ours = vanishing_gradients(m, case.X, case.Y, h0=case.h0)
    theirs = recurrent_vanishing(m, case.X, case.Y, h0=case.h0)
    T = case.X.shape[0]
    assert set(ours) == set(m.STATES) == set(theirs)
    for part in ours:
        assert ours[part].shape == (T + 1,)
        scale = max(float(np.max(theirs[part])), 1e-12)
        np.testing.assert_allclose(ours[part], theirs[part], rtol=0, atol=1e-10 * scale,
                                   err_msg=f"{case.describe()}||dE_T/d{part}_k||")


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=6)
@given(data=st.data())
def test_vanishing_gradient_norms_equal_torch_retain_grad(kind, data):
    case = data.draw(cases(kind, truncate=False, masks=False), label="case")
    vanishing_gradient_norms_equal_torch_retain_grad(case)


@pytest.mark.parametrize("case", PINNED, ids=PIN_IDS)
def test_vanishing_gradient_norms_equal_torch_retain_grad_at_the_edges(case):
    vanishing_gradient_norms_equal_torch_retain_grad(case)


@pytest.mark.parametrize("kind", KINDS)
def test_vanishing_at_k_0_is_the_h0_gradient_of_the_last_step(kind):
    case = pinned(kind, T=6, N=2, D=3, H=3, K=2, seed=5)
    m = case.model
    v = vanishing_gradients(m, case.X, case.Y, h0=case.h0)
    last = np.zeros((6, 2), dtype=bool)
    last[-1] = True
    _, g = m.loss_and_grad(case.X, case.Y, h0=case.h0, mask=last)
    for part in m.STATES:
        assert abs(v[part][0] - np.linalg.norm(g[f"{part}0"])) <= 1e-12 * max(v[part][0], 1e-300)


# -------------------------------------------------------------------------------------------------- inputs
@pytest.mark.parametrize("kind", KINDS)
def test_token_ids_equal_their_one_hot_rows(kind):
    case = pinned(kind, T=5, N=3, D=4, H=3, K=3, ids=True, truncate=2, seed=3)
    m = case.model
    onehot = np.eye(4)[case.X]  # (T, N, D)
    E1, g1 = m.loss_and_grad(case.X, case.Y, **case.kwargs())
    E2, g2 = m.loss_and_grad(onehot, case.Y, **case.kwargs())
    assert_scalar_close(E1, E2, 1e-13, "loss")
    assert_grads_close(g1, g2, 1e-13, FLOOR_TORCH, what="ids vs one-hot: ")


@pytest.mark.parametrize("kind", KINDS)
def test_float32_model_computes_in_float32(kind):
    case = pinned(kind, T=4, N=2, D=3, H=3, K=3, dtype=np.float32, loss="squared_error", mask=True)
    m = case.model
    E, g, state = m.loss_and_grad(case.X, case.Y, **case.kwargs(), return_state=True)
    P, S = m.forward(case.X, h0=case.h0)
    sequences = S if isinstance(S, tuple) else (S,)  # forward's public form: (S, C) for the LSTM
    for arr in list(g.values()) + [P] + list(sequences) + list(m.state_parts(state)):
        assert arr.dtype == np.float32


@pytest.mark.parametrize("kind", KINDS)
def test_config_rebuilds_the_model(kind):
    m = pinned(kind).model
    copy = type(m)(**m.config())
    assert copy.config() == m.config()
    fresh = type(m)(**m.config())
    for k in copy.params:
        np.testing.assert_array_equal(copy.params[k], fresh.params[k])
        assert copy.params[k].shape == m.params[k].shape


def test_parameter_shapes():
    from manual_bp import GRU, LSTM, RNN

    D, H, K = 3, 5, 2
    assert {k: v.shape for k, v in RNN(D, H, K).params.items()} == {
        "U": (H, D), "W": (H, H), "b": (H,), "V": (K, H), "c": (K,)}
    assert {k: v.shape for k, v in LSTM(D, H, K).params.items()} == {
        "U": (4 * H, D), "W": (4 * H, H), "b": (4 * H,), "V": (K, H), "c": (K,)}
    assert {k: v.shape for k, v in GRU(D, H, K).params.items()} == {
        "U": (3 * H, D), "W": (3 * H, H), "b": (3 * H,), "bh": (3 * H,), "V": (K, H), "c": (K,)}


def test_masked_steps_add_nothing_and_their_targets_are_ignored():
    from manual_bp import GRU

    case = pinned("GRU", T=5, N=3, D=3, H=2, K=3, mask=True, seed=2)
    m = case.model
    assert isinstance(m, GRU)
    Y = case.Y.copy()
    Y[~case.mask] = 99  # out of range, but masked out
    E1, g1 = m.loss_and_grad(case.X, case.Y, h0=case.h0, mask=case.mask)
    E2, g2 = m.loss_and_grad(case.X, Y, h0=case.h0, mask=case.mask)
    assert E1 == E2
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])
    none = np.zeros_like(case.mask)
    E0, g0 = m.loss_and_grad(case.X, Y, h0=case.h0, mask=none)
    assert E0 == 0.0 and all(not v.any() for v in g0.values())
