"""Second order through time: R-operator Hessian-vector products (RS1-RS2, RR1-RR4, RL1-RL8, RG1-RG9,
RO1-RO3, RT1-RT4) and Gauss-Newton products with structural damping (GR1-GR3, SD1-SD2) for RNN (tanh, relu),
LSTM and GRU.

Oracles: torch's own nn.RNN/LSTM/GRU + nn.Linear with our weights, differentiated twice by autograd
(double backward for H v; J^T H_L J v with torch's own loss Hessian for G v); central differences of our own
gradient along v (hvpcheck); a closed form (G = H where every residual is 0).
"""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from manual_bp.reference.recurrent_second_order import recurrent_gvp, recurrent_hvp

from manual_bp import GRU, LSTM, RNN
from manual_bp.harness import off_kink, randomize_params, with_params
from manual_bp.recurrent_second_order import gvp, gvp_operator, hvp
from manual_bp.second_order import hvpcheck
from tests.helpers import FLOOR_FD, FLOOR_TORCH, TOL_FD, assert_grads_close, tol_torch
from tests.strategies import recurrent_cases

CASES = dict(max_T=8, max_N=4, max_size=5, truncate=False)


def examples(n):
    """``n`` examples in the ci profile (50), scaled with the profile's own count (thorough: 8n)."""
    return max(1, n * settings().max_examples // 50)


def direction(model, N, rng, with_state):
    """A random direction keyed like params, with random initial-state tangents when ``with_state``."""
    v = {k: rng.standard_normal(p.shape) for k, p in model.params.items()}
    if with_state:
        v.update({f"{part}0": rng.standard_normal((N, model.hidden_size)) for part in model.STATES})
    return v


def dot(a, b):
    return sum(float(np.sum(np.asarray(a[k], dtype=np.float64) * b[k])) for k in b)


def kw(case):
    return {"h0": case.h0, "mask": case.mask}


def assert_same_loss_and_grads(case, E, g):
    """hvp/gvp return E and the gradient exactly as loss_and_grad does (the same operations)."""
    E0, g0 = case.model.loss_and_grad(case.X, case.Y, **kw(case))
    assert E == E0 and list(g) == list(g0)
    for k in g0:
        np.testing.assert_array_equal(g[k], g0[k], err_msg=f"grads[{k!r}] differs from loss_and_grad's")


# ------------------------------------------------------------------------------------------ against torch
@settings(max_examples=examples(15))
@given(recurrent_cases(**CASES), st.integers(0, 2**32 - 1), st.booleans())
def test_hvp_equals_torch_double_backward(case, seed, with_state):
    m, N = case.model, np.shape(case.X)[1]
    v = direction(m, N, np.random.default_rng(seed), with_state)
    E, g, Hv = hvp(m, case.X, case.Y, v, **kw(case))
    _, _, Hv_t = recurrent_hvp(m, case.X, case.Y, v, **kw(case))
    assert set(Hv) == set(Hv_t)
    assert all(Hv[k].dtype == m.dtype and Hv[k].shape == np.shape(v[k]) for k in Hv)
    assert_grads_close(Hv, Hv_t, tol_torch(m.dtype), FLOOR_TORCH, what=f"{case.describe()} Hv: ")
    assert_same_loss_and_grads(case, E, g)


@settings(max_examples=examples(12))
@given(recurrent_cases(**CASES), st.integers(0, 2**32 - 1), st.booleans(), st.sampled_from([0.0, 0.7]))
def test_gvp_equals_torch_is_symmetric_and_positive_semidefinite(case, seed, with_state, mu):
    m, N = case.model, np.shape(case.X)[1]
    rng = np.random.default_rng(seed)
    v, u = direction(m, N, rng, with_state), direction(m, N, rng, with_state)
    E, g, Gv = gvp(m, case.X, case.Y, v, structural_damping=mu, **kw(case))
    Gv_t = recurrent_gvp(m, case.X, case.Y, v, structural_damping=mu, **kw(case))
    assert set(Gv) == set(Gv_t)
    assert_grads_close(Gv, Gv_t, tol_torch(m.dtype), FLOOR_TORCH, what=f"{case.describe()} mu={mu} Gv: ")
    assert_same_loss_and_grads(case, E, g)
    Gu = gvp(m, case.X, case.Y, u, structural_damping=mu, **kw(case))[2]
    scale = math.sqrt(dot(v, v) * dot(Gv, Gv)) + 1e-300
    assert dot(v, Gv) >= -1e-12 * scale, f"v.Gv = {dot(v, Gv)!r} < 0 for {case.describe()}"
    assert abs(dot(u, Gv) - dot(v, Gu)) <= 1e-10 * scale + 1e-10 * math.sqrt(dot(u, u) * dot(Gu, Gu))
    E1, g1, product = gvp_operator(m, case.X, case.Y, **kw(case))
    assert E1 == E
    for k, arr in product(v, structural_damping=mu).items():
        np.testing.assert_array_equal(arr, Gv[k], err_msg=f"gvp_operator's product[{k!r}] differs from gvp")


@settings(max_examples=examples(5))
@given(recurrent_cases(dtypes=(np.float32,), **CASES), st.integers(0, 2**32 - 1))
def test_float32_products_stay_float32_and_match_torch_in_float64(case, seed):
    m, N = case.model, np.shape(case.X)[1]
    v = direction(m, N, np.random.default_rng(seed), False)
    _, g, Hv = hvp(m, case.X, case.Y, v, **kw(case))
    _, _, Gv = gvp(m, case.X, case.Y, v, **kw(case))
    assert all(a.dtype == np.float32 for d in (g, Hv, Gv) for a in d.values())
    ref_H = recurrent_hvp(m, case.X, case.Y, v, dtype=np.float64, **kw(case))[2]
    ref_G = recurrent_gvp(m, case.X, case.Y, v, dtype=np.float64, **kw(case))
    assert_grads_close(Hv, ref_H, tol_torch(np.float32), 1e-3, f"{case.describe()} Hv: ")
    assert_grads_close(Gv, ref_G, tol_torch(np.float32), 1e-3, f"{case.describe()} Gv: ")


# -------------------------------------------------------------------------------------- finite differences
def grad_and_hvp_fns(case, with_state):
    """``grad_fn(point)`` and ``hvp_fn(point, v)`` at a point of params (and of the initial state)."""
    m = case.model
    names = [f"{part}0" for part in m.STATES]

    def at(point, f):
        h0 = m.public_state(tuple(point[n] for n in names)) if with_state else case.h0
        return with_params(m, point, lambda: f(h0))

    def grad_fn(point):
        return at(point, lambda h0: m.loss_and_grad(case.X, case.Y, h0=h0, mask=case.mask)[1])

    def hvp_fn(point, v):
        return at(point, lambda h0: hvp(m, case.X, case.Y, v, h0=h0, mask=case.mask)[2])

    return grad_fn, hvp_fn


@settings(max_examples=examples(20))
@given(recurrent_cases(**CASES), st.integers(0, 2**32 - 1), st.booleans())
def test_hvp_equals_central_differences_of_grad_and_is_symmetric(case, seed, with_state):
    assume(off_kink(case))
    m, N = case.model, np.shape(case.X)[1]
    rng = np.random.default_rng(seed)
    v, u = direction(m, N, rng, with_state), direction(m, N, rng, with_state)
    point = case.fd_point() if with_state else dict(m.params)
    grad_fn, hvp_fn = grad_and_hvp_fns(case, with_state)
    result = hvpcheck(grad_fn, point, v, hvp_fn, tol=TOL_FD, floor=FLOOR_FD)
    assert result.ok, f"{case.describe()}:\n{result}"
    Hv, Hu = hvp(m, case.X, case.Y, v, **kw(case))[2], hvp(m, case.X, case.Y, u, **kw(case))[2]
    assert abs(dot(u, Hv) - dot(v, Hu)) <= 1e-10 * (math.sqrt(dot(u, u) * dot(Hv, Hv)) + 1e-300)


# ------------------------------------------------------------------------------------------ G and H
@pytest.mark.parametrize("cls, kw_", [(RNN, {"nonlinearity": "tanh"}), (RNN, {"nonlinearity": "relu"}),
                                      (LSTM, {}), (GRU, {})])
def test_gauss_newton_equals_hessian_where_every_residual_is_zero(cls, kw_):
    """Squared error with targets equal to the outputs: dE/dq_t = 0, so every term of H but J^T H_L J is 0."""
    rng = np.random.default_rng(11)
    m = cls(3, 4, 2, loss="squared_error", seed=3, **kw_)
    m.params = randomize_params(m.params, rng)
    X = rng.standard_normal((5, 3, 3))
    h0 = m.public_state(tuple(rng.standard_normal((3, 4)) * 0.5 for _ in m.STATES))
    Y, _ = m.forward(X, h0=h0)
    v = direction(m, 3, rng, True)
    E, _, Hv = hvp(m, X, Y, v, h0=h0)
    _, _, Gv = gvp(m, X, Y, v, h0=h0)
    assert E < 1e-25
    assert_grads_close(Hv, Gv, 1e-12, 1e-12, what=f"{m!r} H v vs G v at zero residual: ")
    v2 = direction(m, 3, rng, True)
    _, _, Hv2 = hvp(m, X, Y + 0.5, v2, h0=h0)  # non-zero residuals: the two must now differ
    _, _, Gv2 = gvp(m, X, Y + 0.5, v2, h0=h0)
    assert max(float(np.abs(Hv2[k] - Gv2[k]).max()) for k in ("U", "W", "b")) > 1e-6


def test_structural_damping_adds_mu_times_a_positive_semidefinite_product():
    rng = np.random.default_rng(4)
    m = RNN(3, 5, 2, seed=1)
    X, Y = rng.standard_normal((6, 2, 3)), rng.integers(0, 2, (6, 2))
    mask = rng.uniform(size=(6, 2)) < 0.5
    v = direction(m, 2, rng, False)
    G0 = gvp(m, X, Y, v, mask=mask)[2]
    G1 = gvp(m, X, Y, v, mask=mask, structural_damping=1.0)[2]
    G3 = gvp(m, X, Y, v, mask=mask, structural_damping=3.0)[2]
    Sv = {k: G1[k] - G0[k] for k in G0}
    assert_grads_close({k: G3[k] - G0[k] for k in G0}, {k: 3 * s for k, s in Sv.items()}, 1e-12, 1e-12)
    assert dot(v, Sv) > 0
    assert np.all(Sv["V"] == 0) and np.all(Sv["c"] == 0)  # the hidden states do not depend on V, c


# ------------------------------------------------------------------------------------------ refusals
def small_lstm():
    rng = np.random.default_rng(0)
    m = LSTM(2, 3, 2, seed=0)
    X, Y = rng.standard_normal((4, 2, 2)), rng.integers(0, 2, (4, 2))
    return m, X, Y, direction(m, 2, rng, False)


@pytest.mark.parametrize("truncate", [0, 1, 2])
def test_truncated_products_are_refused_and_full_bptt_truncation_is_none(truncate):
    m, X, Y, v = small_lstm()
    for call in (lambda: hvp(m, X, Y, v, truncate=truncate), lambda: gvp(m, X, Y, v, truncate=truncate),
                 lambda: gvp_operator(m, X, Y, truncate=truncate)):
        with pytest.raises(ValueError, match="truncate"):
            call()
    for k in (3, 10):  # k >= T-1 is full BPTT
        for a, b in zip(hvp(m, X, Y, v, truncate=k)[2].values(), hvp(m, X, Y, v)[2].values()):
            np.testing.assert_array_equal(a, b)


def test_bad_arguments_are_refused_before_any_work_and_change_nothing():
    m, X, Y, v = small_lstm()
    before = {k: p.copy() for k, p in m.params.items()}
    with pytest.raises(ValueError, match="missing"):
        hvp(m, X, Y, {k: a for k, a in v.items() if k != "W"})
    with pytest.raises(ValueError, match="unexpected"):
        gvp(m, X, Y, {**v, "bh": np.zeros(12)})
    with pytest.raises(ValueError, match=r"v\['U'\]"):
        hvp(m, X, Y, {**v, "U": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="h0"):
        hvp(m, X, Y, {**v, "h0": np.zeros((5, 3))})
    with pytest.raises(ValueError, match="finite"):
        gvp(m, X, Y, {**v, "c": np.array([np.nan, 0.0])})
    with pytest.raises(ValueError, match="structural_damping"):
        gvp(m, X, Y, v, structural_damping=-1.0)
    with pytest.raises(TypeError, match="structural_damping"):
        gvp(m, X, Y, v, structural_damping="big")
    with pytest.raises(TypeError, match="RNN, LSTM or GRU"):
        hvp(object(), X, Y, v)
    with pytest.raises(TypeError, match="integer"):
        hvp(m, X, Y, v, truncate=1.5)
    _, _, product = gvp_operator(m, X, Y)
    with pytest.raises(ValueError, match="missing"):
        product({"U": v["U"]})
    for k, p in m.params.items():
        np.testing.assert_array_equal(p, before[k])


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_batch_first_models_give_the_time_major_products(cls):
    rng = np.random.default_rng(6)
    tm, bf = cls(3, 4, 2, seed=5), cls(3, 4, 2, seed=5, batch_first=True)
    X, Y = rng.standard_normal((5, 2, 3)), rng.integers(0, 2, (5, 2))
    mask = rng.uniform(size=(5, 2)) < 0.7
    v = direction(tm, 2, rng, True)
    for f in (hvp, gvp):
        a = f(tm, X, Y, v, mask=mask)
        b = f(bf, X.transpose(1, 0, 2), Y.T, v, mask=mask.T)
        assert a[0] == b[0]
        for k in a[2]:
            np.testing.assert_array_equal(a[2][k], b[2][k], err_msg=f"{f.__name__} {k}")


@pytest.mark.parametrize("options", [{"num_layers": 2}, {"bidirectional": True}, {"bias": False},
                                     {"proj_size": 2}, {"output_size": None}])
def test_models_beyond_one_layer_with_biases_and_a_head_are_refused(options):
    kw = {"output_size": 2, **options}
    m = LSTM(3, 4, seed=0, **kw)
    X, Y = np.zeros((3, 2, 3)), np.zeros((3, 2), dtype=int)
    with pytest.raises(ValueError, match="one-layer"):
        hvp(m, X, Y, {k: np.zeros_like(p) for k, p in m.params.items()})
    with pytest.raises(ValueError, match="one-layer"):
        gvp_operator(m, X, Y)
