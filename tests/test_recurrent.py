"""RNN, LSTM and GRU gradients (BPTT, truncated BPTT, JVP) against torch's own modules and finite differences.

Every property runs for each of the three models (the skeleton is shared, the cells are not). The torch oracle
(``reference/recurrent.py``) computes in float64 even for a float32 model.
"""

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from manual_bp import vanishing_gradients
from reference import (
    recurrent_forward,
    recurrent_jvp,
    recurrent_loss_and_grad,
    recurrent_train_chunks,
    recurrent_vanishing,
)
from tests.helpers import (
    FLOOR_FD,
    FLOOR_TORCH,
    TOL_FD,
    assert_grads_close,
    assert_scalar_close,
    fd_grads,
    tol_torch,
)
from tests.strategies import (
    RECURRENT_MODELS,
    RecurrentCase,
    random_state,
    randomize_recurrent_params,
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
    model.params = randomize_recurrent_params(model.params, rng)
    X = recurrent_inputs(model, T, N, rng, ids)
    Y = recurrent_targets(model, T, N, rng)
    m = (rng.uniform(size=(T, N)) < 0.7) if mask else None
    return RecurrentCase(model, X, Y, random_state(model, N, rng), m, truncate)


def cases(kind, **kw):
    return recurrent_cases(models=(kind,), **kw)


def state_keys(model):
    return [f"{p}0" for p in model.STATES]


def fd_loss(case):
    """The float64 loss as a function of a dict of params plus the initial state(s)."""
    m = case.model
    names = state_keys(m)

    def f(p):
        old = m.params
        m.params = {k: p[k] for k in old}
        try:
            h0 = tuple(p[n] for n in names)
            return m.loss(case.X, case.Y, h0=h0 if len(h0) > 1 else h0[0], mask=case.mask)
        finally:
            m.params = old

    return f


def fd_point(case):
    m = case.model
    N = case.X.shape[1]
    h0 = case.h0 if case.h0 is not None else tuple(np.zeros((N, m.hidden_size)) for _ in m.STATES)
    parts = h0 if isinstance(h0, tuple) else (h0,)
    return {**m.params, **{n: np.asarray(v, dtype=np.float64) for n, v in zip(state_keys(m), parts)}}


PINS = {  # the edges a loop bound gets wrong: T=1, N=1, H=1; and T=2 token ids truncated at 0, SE, masked
    kind: [pinned(kind), pinned(kind, T=2, D=3, ids=True, truncate=0, loss="squared_error", mask=True)]
    for kind in KINDS
}


def _calling(prop):
    """A fresh function for each model to carry its own hypothesis decorations."""

    def test(case, **kw):
        prop(case, **kw)

    return test


def per_model(max_examples=None, extras=None, pin_extras=None, **strategy_kw):
    """Turn a property ``prop(case, **extras)`` into one hypothesis test per model, ``test_<prop>_<model>``,
    drawing cases of that model only (so each model gets the profile's full number of examples) and pinned
    with ``@example`` at the edges in ``PINS``."""
    extras = extras or {}
    pin_extras = pin_extras or {}

    def make(prop):
        for kind in KINDS:
            test = given(case=cases(kind, **strategy_kw), **extras)(_calling(prop))
            for pin in PINS[kind]:
                test = example(case=pin, **pin_extras)(test)
            if max_examples is not None:
                test = settings(max_examples=max_examples)(test)
            name = f"test_{prop.__name__}_{kind.lower()}"
            test.__name__ = test.__qualname__ = name
            globals()[name] = test
        return prop

    return make


# -------------------------------------------------------------------------------------------------- vs torch
@per_model(dtypes=(np.float64, np.float32))
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


@per_model(max_examples=6, max_T=6, max_N=3, max_size=3, truncate=False)
def grads_equal_finite_differences(case):
    assume(relu_safe_recurrent(case))
    _, g = case.model.loss_and_grad(case.X, case.Y, **case.kwargs(truncate=False))
    numeric = fd_grads(fd_loss(case), fd_point(case))
    assert_grads_close(g, numeric, TOL_FD, FLOOR_FD, what=case.describe() + "vs finite differences: ")


@per_model(truncate=False, extras={"seed": st.integers(0, 2**32 - 1)}, pin_extras={"seed": 1})
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


@per_model(truncate=False, masks=False)
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


# ------------------------------------------------------------------------------------------------ truncation
@per_model(truncate=False, extras={"extra": st.integers(0, 3)}, pin_extras={"extra": 0})
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


@per_model(max_examples=4, max_T=30, max_N=4, max_size=5, truncate=False, masks=False,
           extras={"chunk": st.integers(1, 15), "k": st.none() | st.integers(0, 15)},
           pin_extras={"chunk": 1, "k": None})
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
    for ours, theirs in zip(state if isinstance(state, tuple) else (state,),
                            state_t if isinstance(state_t, tuple) else (state_t,)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


# -------------------------------------------------------------------------------------------------- vanishing
@per_model(max_examples=6, truncate=False, masks=False)
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
    for arr in list(g.values()) + [P] + list(S if isinstance(S, tuple) else (S,)) + list(
            state if isinstance(state, tuple) else (state,)):
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
