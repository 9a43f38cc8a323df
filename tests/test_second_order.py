"""Second order for the MLP: R-operator Hessian-vector products (RF1-RF2, RB1-RB4), Gauss-Newton products
(GN1-GN4), hvpcheck (HC1) and the Hessian-free optimiser (HF1-HF7).

Oracles: torch.func (forward-over-reverse HVP; J^T H_L J v with torch's own loss Hessian) on nn.Linear
modules with our weights; central differences of our own gradient along v; closed forms (G = H for a
one-layer net with a matching loss).
"""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from manual_bp.reference.second_order import mlp_gvp, mlp_hvp

from manual_bp import MLP
from manual_bp.activations import ACTIVATIONS
from manual_bp.harness import randomize_params, with_params
from manual_bp.hessian_free import HessianFree
from manual_bp.mlp import SECOND_DERIVATIVES
from manual_bp.second_order import hvpcheck
from tests.helpers import FLOOR_FD, FLOOR_TORCH, TOL_FD, assert_grads_close, tol_torch
from tests.strategies import mlp_cases, relu_safe


def examples(n):
    """``n`` examples in the default ``ci`` profile (50), scaled with the profile's count (thorough: 8n)."""
    return max(1, n * settings().max_examples // 50)


def direction(net, rng, X=None):
    """A random direction keyed like params (and a random input tangent when X is given)."""
    v = {k: rng.standard_normal(p.shape) for k, p in net.params.items()}
    if X is not None:
        v["X"] = rng.standard_normal(np.shape(X))
    return v


def dot(a, b):
    return sum(float(np.sum(np.asarray(a[k], dtype=np.float64) * b[k])) for k in b)


def grad_and_hvp_fns(net, X, Y, product="hvp"):
    """``grad_fn(params)`` and ``hvp_fn(params, v)`` of the net on (X, Y), its own params restored."""

    def at(p, f):
        return with_params(net, p, f)

    def grad_fn(p):
        return at(p, lambda: net.loss_and_grad(X, Y)[1])

    def hvp_fn(p, v):
        return at(p, lambda: getattr(net, product)(X, Y, v)[2])

    return grad_fn, hvp_fn


# ------------------------------------------------------------------------------------------ against torch
@settings(max_examples=examples(25))
@given(mlp_cases(max_layers=4, max_width=10, max_batch=10), st.integers(0, 2**32 - 1), st.booleans())
def test_hvp_equals_torch_and_returns_loss_and_grad_bit_for_bit(case, seed, input_tangent):
    net, X, Y = case
    v = direction(net, np.random.default_rng(seed), X if input_tangent else None)
    E, g, Hv = net.hvp(X, Y, v)
    E_t, _, Hv_t = mlp_hvp(net, X, Y, v)
    assert set(Hv) == set(net.params)
    assert all(Hv[k].dtype == net.dtype and Hv[k].shape == net.params[k].shape for k in Hv)
    assert_grads_close(Hv, Hv_t, tol_torch(net.dtype), FLOOR_TORCH, what=f"{net!r} N={len(X)} Hv: ")
    E0, g0 = net.loss_and_grad(X, Y)
    assert E == E0 and list(g) == list(g0)
    for k in g0:
        np.testing.assert_array_equal(g[k], g0[k], err_msg=f"hvp's grads[{k!r}] differs from loss_and_grad's")


@settings(max_examples=examples(25))
@given(mlp_cases(max_layers=4, max_width=10, max_batch=10), st.integers(0, 2**32 - 1), st.booleans())
def test_gvp_equals_torch_is_symmetric_and_positive_semidefinite(case, seed, input_tangent):
    net, X, Y = case
    rng = np.random.default_rng(seed)
    v = direction(net, rng, X if input_tangent else None)
    E, g, Gv = net.gvp(X, Y, v)
    assert_grads_close(Gv, mlp_gvp(net, X, Y, v), tol_torch(net.dtype), FLOOR_TORCH, what=f"{net!r} Gv: ")
    E0, g0 = net.loss_and_grad(X, Y)
    assert E == E0 and all(np.array_equal(g[k], g0[k]) for k in g0)
    v.pop("X", None)
    u = direction(net, rng)
    Gv, Gu = net.gvp(X, Y, v)[2], net.gvp(X, Y, u)[2]
    scale = math.sqrt(dot(v, v) * dot(Gv, Gv)) + 1e-300
    assert dot(v, Gv) >= -1e-12 * scale, f"v.Gv = {dot(v, Gv)!r} < 0 for {net!r}"
    assert abs(dot(u, Gv) - dot(v, Gu)) <= 1e-10 * (math.sqrt(dot(u, u) * dot(Gv, Gv)) + 1e-300)
    _, _, product = net.gvp_operator(X, Y)
    for k, arr in product(v).items():
        np.testing.assert_array_equal(arr, Gv[k], err_msg=f"gvp_operator's product[{k!r}] differs from gvp")


@settings(max_examples=examples(15))
@given(mlp_cases(dtypes=(np.float32,), max_layers=3, max_width=8, max_batch=8), st.integers(0, 2**32 - 1))
def test_float32_products_stay_float32_and_match_torch_in_float64(case, seed):
    net, X, Y = case
    v = direction(net, np.random.default_rng(seed))
    _, g, Hv = net.hvp(X, Y, v)
    _, _, Gv = net.gvp(X, Y, v)
    assert all(a.dtype == np.float32 for d in (g, Hv, Gv) for a in d.values())
    assert_grads_close(Hv, mlp_hvp(net, X, Y, v, dtype=np.float64)[2], tol_torch(np.float32), 1e-3, "Hv: ")
    assert_grads_close(Gv, mlp_gvp(net, X, Y, v, dtype=np.float64), tol_torch(np.float32), 1e-3, "Gv: ")


# -------------------------------------------------------------------------------------- finite differences
@settings(max_examples=examples(25))
@given(mlp_cases(max_layers=3, max_width=6, max_batch=6), st.integers(0, 2**32 - 1))
def test_hvp_equals_central_differences_of_grad_and_is_symmetric(case, seed):
    net, X, Y = case
    assume(relu_safe(net, X))
    rng = np.random.default_rng(seed)
    v, u = direction(net, rng), direction(net, rng)
    grad_fn, hvp_fn = grad_and_hvp_fns(net, X, Y)
    result = hvpcheck(grad_fn, net.params, v, hvp_fn, tol=TOL_FD, floor=FLOOR_FD)
    assert result.ok, f"{net!r}:\n{result}"
    Hv, Hu = net.hvp(X, Y, v)[2], net.hvp(X, Y, u)[2]
    assert abs(dot(u, Hv) - dot(v, Hu)) <= 1e-10 * (math.sqrt(dot(u, u) * dot(Hv, Hv)) + 1e-300)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_second_derivatives_equal_finite_differences_of_the_first(name):
    f, fprime = ACTIVATIONS[name]
    z = np.linspace(-6, 6, 101) + 0.013  # off relu's kink at 0
    a = f(z)
    fp = fprime(z, a)
    fpp = SECOND_DERIVATIVES[name]
    got = np.zeros_like(z) if fpp is None else fpp(z, a, fp)
    eps = 1e-6
    numeric = (fprime(z + eps, f(z + eps)) - fprime(z - eps, f(z - eps))) / (2 * eps)
    np.testing.assert_allclose(got, numeric, rtol=0, atol=1e-8)


# ------------------------------------------------------------------------------------------ G and H
@pytest.mark.parametrize(
    "output, loss",
    [("identity", "squared_error"), ("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy")],
)
def test_gauss_newton_equals_hessian_for_a_one_layer_net_with_a_matching_loss(output, loss):
    """z = X W^T + b is linear in theta, so the Hessian's only term is J^T H_L J (GN1)."""
    rng = np.random.default_rng(5)
    net = MLP([4, 3], output_activation=output, loss=loss, seed=2)
    net.params = randomize_params(net.params, rng)
    X = rng.standard_normal((7, 4))
    Y = rng.integers(0, 3, 7) if loss == "cross_entropy" else rng.uniform(0, 1, (7, 3))
    for _ in range(3):
        v = direction(net, rng)
        assert_grads_close(net.gvp(X, Y, v)[2], net.hvp(X, Y, v)[2], 1e-13, FLOOR_TORCH, "G v vs H v: ")


def test_gauss_newton_differs_from_hessian_where_the_net_is_not_linear():
    """The same check can fail: a hidden layer (or a non-identity output with squared error) adds terms."""
    rng = np.random.default_rng(5)
    for net in (MLP([4, 3], output_activation="sigmoid", seed=1), MLP([4, 5, 3], "tanh", "identity", seed=1)):
        net.params = randomize_params(net.params, rng)
        X, Y = rng.standard_normal((7, 4)), rng.standard_normal((7, 3))
        v = direction(net, rng)
        assert not compare_ok(net.gvp(X, Y, v)[2], net.hvp(X, Y, v)[2], 1e-6)


def compare_ok(a, b, tol):
    from manual_bp.gradcheck import compare_grads

    return compare_grads(a, b, tol=tol, floor=FLOOR_TORCH).ok


def test_schraudolph_split_keeps_G_positive_where_the_hessian_is_indefinite():
    """Squared error on a sigmoid output: H has negative directions (the (a - y) f'' term), G has none."""
    rng = np.random.default_rng(0)
    net = MLP([1, 1], output_activation="sigmoid", seed=0)
    net.params = {"W1": np.array([[3.0]]), "b1": np.array([2.0])}
    X, Y = np.array([[1.0]]), np.array([[-2.0]])  # a far above y: (a - y) f''(z) < 0
    H = np.array([[net.hvp(X, Y, {"W1": e[:1].reshape(1, 1), "b1": e[1:]})[2][k].ravel()[0]
                   for k in ("W1", "b1")] for e in np.eye(2)])
    G = np.array([[net.gvp(X, Y, {"W1": e[:1].reshape(1, 1), "b1": e[1:]})[2][k].ravel()[0]
                   for k in ("W1", "b1")] for e in np.eye(2)])
    assert np.linalg.eigvalsh(H).min() < 0
    assert np.linalg.eigvalsh(G).min() >= -1e-15
    v = direction(net, rng)
    assert dot(v, net.gvp(X, Y, v)[2]) >= 0


# ------------------------------------------------------------------------------------------ validation
X_OK, Y_OK = np.ones((2, 3)), np.zeros((2, 2))


def _v(net, **changes):
    v = {k: np.ones_like(p) for k, p in net.params.items()}
    v.update(changes)
    return {k: x for k, x in v.items() if x is not None}


BAD_V = [
    (lambda net: [1, 2], TypeError, "v must be a dict"),
    (lambda net: _v(net, W2=None), ValueError, r"missing \['W2'\]"),
    (lambda net: _v(net, W3=np.ones((2, 2))), ValueError, r"unexpected \['W3'\]"),
    (lambda net: _v(net, W1=np.ones((3, 4))), ValueError, r"v\['W1'\] must have shape \(4, 3\); got"),
    (lambda net: _v(net, b1=np.array(["a"] * 4)), TypeError, "numeric array"),
    (lambda net: _v(net, b2=np.ones(2, dtype=complex)), TypeError, "real"),
    (lambda net: _v(net, b2=np.array([1.0, np.nan])), ValueError, "finite"),
    (lambda net: _v(net, X=np.ones((3, 3))), ValueError, r"v\['X'\] must have shape \(N=2, n0=3\); got"),
]


@pytest.mark.parametrize("method", ["hvp", "gvp", "gvp_operator"])
@pytest.mark.parametrize("make_v, exc, message", BAD_V)
def test_bad_direction_raises_before_any_work(method, make_v, exc, message, monkeypatch):
    net = MLP([3, 4, 2], "tanh", "sigmoid", seed=0)
    before = {k: p.copy() for k, p in net.params.items()}
    v = make_v(net)
    if method == "gvp_operator":
        product = net.gvp_operator(X_OK, Y_OK)[2]
        with pytest.raises(exc, match=message):
            product(v)
    else:
        def no_work(*args, **kwargs):
            raise AssertionError("the forward pass ran before v was validated")

        monkeypatch.setattr(net, "_forward", no_work)
        with pytest.raises(exc, match=message):
            getattr(net, method)(X_OK, Y_OK, v)
    assert all(np.array_equal(net.params[k], before[k]) for k in before)


def test_bad_inputs_to_products_raise_like_loss_and_grad():
    net = MLP([3, 4, 2], seed=0)
    v = _v(net)
    with pytest.raises(ValueError, match=r"X must have shape \(N, n0=3\); got \(2, 4\)"):
        net.hvp(np.ones((2, 4)), Y_OK, v)
    with pytest.raises(ValueError, match=r"Y must have shape \(N=2, nL=2\)"):
        net.gvp(X_OK, np.zeros((3, 2)), v)


# ------------------------------------------------------------------------------------------ hvpcheck
def test_hvpcheck_is_exact_on_a_quadratic_and_catches_a_wrong_product():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((5, 5))
    Hm = M + M.T
    params = {"x": rng.standard_normal(5), "y": rng.standard_normal((2, 3))}

    def grad_fn(p):  # E = 1/2 x.Hm x + sum(y^3)/3 + x_0 sum(y)
        return {"x": Hm @ p["x"] + np.r_[p["y"].sum(), np.zeros(4)], "y": p["y"] ** 2 + p["x"][0]}

    def hvp_fn(p, v):
        return {
            "x": Hm @ v["x"] + np.r_[v["y"].sum(), np.zeros(4)],
            "y": 2 * p["y"] * v["y"] + v["x"][0],
        }

    v = {"x": rng.standard_normal(5), "y": rng.standard_normal((2, 3))}
    before = {k: a.copy() for k, a in params.items()}
    result = hvpcheck(grad_fn, params, v, hvp_fn)
    assert result.ok and result.max_error < 1e-8, str(result)
    assert all(np.array_equal(params[k], before[k]) for k in params)

    def wrong(p, v):  # forgets the mixed term d^2E / dx_0 dy in y's row
        out = hvp_fn(p, v)
        out["y"] = 2 * p["y"] * v["y"]
        return out

    bad = hvpcheck(grad_fn, params, v, wrong)
    assert not bad.ok and not bool(bad)
    text = str(bad)
    assert "FAIL y (2, 3)" in text and "PASS x (5,)" in text and "allowance" in text and "at index" in text
    assert [r.name for r in bad.failures()] == ["y"]


def test_hvpcheck_rejects_gauss_newton_as_a_hessian_and_names_the_parameter():
    rng = np.random.default_rng(1)
    net = MLP([3, 4, 2], "tanh", "sigmoid", seed=0)
    net.params = randomize_params(net.params, rng)
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    v = direction(net, rng)
    grad_fn, hvp_fn = grad_and_hvp_fns(net, X, Y, product="gvp")
    result = hvpcheck(grad_fn, net.params, v, hvp_fn)
    assert not result.ok
    assert result.worst.name in net.params and f"FAIL {result.worst.name}" in str(result)


def test_hvpcheck_bad_arguments():
    p = {"w": np.zeros(3)}
    g = lambda q: q  # noqa: E731
    with pytest.raises(ValueError, match=r"missing \['w'\], unexpected \['u'\]"):
        hvpcheck(g, p, {"u": np.zeros(3)}, g)
    with pytest.raises(ValueError, match=r"v\['w'\] must have the shape of params\['w'\], \(3,\); got"):
        hvpcheck(g, p, {"w": np.zeros(2)}, g)
    with pytest.raises(TypeError, match="hvp_fn must be callable"):
        hvpcheck(g, p, {"w": np.zeros(3)}, None)
    with pytest.raises(ValueError, match="eps must be a positive number"):
        hvpcheck(g, p, {"w": np.zeros(3)}, g, eps=0)
    with pytest.warns(RuntimeWarning, match="not float64"):
        hvpcheck(lambda q: {"w": q["w"]}, {"w": np.zeros(3, np.float32)}, {"w": np.ones(3)},
                 lambda q, v: {"w": v["w"]})


# ------------------------------------------------------------------------------------------ Hessian-free
def xor_problem(seed=0, N=64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 2))
    return X, (X[:, 0] * X[:, 1] > 0).astype(float)


def test_hessian_free_decreases_the_loss_and_reports_each_step():
    X, Y = xor_problem()
    net = MLP([2, 8, 1], "tanh", "sigmoid", "binary_cross_entropy", seed=0)
    hf = HessianFree(net, damping=1.0, max_cg=30)
    E_start = net.loss(X, Y)
    for _ in range(12):
        info = hf.step(X, Y)
        assert info["loss_after"] <= info["loss_before"]
        assert info["loss_after"] == pytest.approx(net.loss(X, Y), rel=1e-12, abs=0)
        assert 1 <= info["cg_iterations"] <= 30 and info["gv_products"] >= info["cg_iterations"] + 1
        ratio = info["next_damping"] / info["damping"]
        assert any(ratio == pytest.approx(r, rel=1e-14) for r in (1.0, 1.5, 2 / 3))
        assert hf.damping == info["next_damping"]
    assert net.loss(X, Y) < 0.2 * E_start  # 0.69 -> 0.10 (XOR is not linearly separable)
    assert hf.step_count == 12


def test_hessian_free_lambda_follows_rho():
    X, Y = xor_problem(1)
    net = MLP([2, 6, 1], "tanh", "sigmoid", "binary_cross_entropy", seed=1)
    hf = HessianFree(net, damping=10.0, max_cg=20)
    for _ in range(4):
        info = hf.step(X, Y)
        rho, lam = info["rho"], info["damping"]
        expected = lam * 1.5 if rho < 0.25 else lam * 2 / 3 if rho > 0.75 else lam  # (HF6)
        assert info["next_damping"] == pytest.approx(expected, rel=1e-15)
        assert hf.damping == info["next_damping"]


def test_hessian_free_state_dict_round_trip_continues_exactly():
    X, Y = xor_problem(2, N=32)
    rng = np.random.default_rng(3)
    a = MLP([2, 5, 3], "softplus", "softmax", "cross_entropy", seed=3)
    labels = rng.integers(0, 3, 32)
    hf = HessianFree(a, damping=0.5, max_cg=15)
    hf.step(X, labels)
    sd = hf.state_dict()
    assert set(sd) == {"config", "step_count", "state"} and set(sd["state"]) == {"cg_init"}
    assert all(isinstance(x, (int, float)) for x in sd["config"].values())
    assert all(isinstance(x, np.ndarray) and x.dtype == a.dtype for x in sd["state"]["cg_init"].values())
    b = MLP(**a.config())
    b.params = {k: p.copy() for k, p in a.params.items()}
    hf_b = HessianFree(b)
    hf_b.load_state_dict(sd)
    assert hf_b.config() == hf.config() and hf_b.step_count == 1
    info_a, info_b = hf.step(X, labels), hf_b.step(X, labels)
    assert info_a == info_b
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_hessian_free_load_state_dict_rejects_mismatch_and_changes_nothing():
    net = MLP([2, 3, 1], seed=0)
    hf = HessianFree(net, damping=2.0)
    sd = hf.state_dict()
    sd["state"]["cg_init"]["W1"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"cg_init'\]\['W1'\] must have shape \(3, 2\)"):
        hf.load_state_dict(sd)
    sd = hf.state_dict()
    sd["config"]["damping"] = -1.0
    with pytest.raises(ValueError, match="damping must be > 0"):
        hf.load_state_dict(sd)
    assert hf.damping == 2.0 and hf.step_count == 0


def test_hessian_free_bad_arguments_and_bad_batches():
    net = MLP([2, 3, 1], seed=0)
    with pytest.raises(ValueError, match="structural_damping=0.5 needs a model whose gvp takes structural"):
        HessianFree(net, structural_damping=0.5)
    with pytest.raises(ValueError, match="max_cg must be >= 1"):
        HessianFree(net, max_cg=0)
    with pytest.raises(ValueError, match="damping must be > 0"):
        HessianFree(net, damping=0.0)
    with pytest.raises(TypeError, match="MLP has no 'gvp'"):
        HessianFree(type("MLP", (), {"params": net.params, "loss": net.loss, "loss_and_grad": net.loss})())
    hf = HessianFree(net)
    before = {k: p.copy() for k, p in net.params.items()}
    with pytest.raises(ValueError, match="X must have shape"):
        hf.step(np.ones((4, 3)), np.zeros((4, 1)))
    assert all(np.array_equal(net.params[k], before[k]) for k in before) and hf.step_count == 0


class StructurallyDamped:
    """A model whose gvp takes structural_damping (here S = I on the first weight matrix) and that has no
    gvp_operator: HF must route every damped product through gvp with structural_damping = lambda mu."""

    def __init__(self, net):
        self.net, self.params, self.calls = net, net.params, []

    def loss(self, X, Y):
        return self.net.loss(X, Y)

    def loss_and_grad(self, X, Y):
        return self.net.loss_and_grad(X, Y)

    def gvp(self, X, Y, v, structural_damping=0.0):
        self.calls.append(structural_damping)
        E, g, Gv = self.net.gvp(X, Y, v)
        Gv["W1"] = Gv["W1"] + structural_damping * np.asarray(v["W1"])
        return E, g, Gv


def test_structural_damping_goes_through_the_models_gvp():
    X, Y = xor_problem(4, N=32)
    model = StructurallyDamped(MLP([2, 4, 1], "tanh", "sigmoid", "binary_cross_entropy", seed=4))
    hf = HessianFree(model, damping=2.0, max_cg=10, structural_damping=0.25)
    info = hf.step(X, Y)
    assert info["loss_after"] <= info["loss_before"]
    assert info["gv_products"] == len(model.calls)
    assert model.calls.count(0.0) == 1  # the undamped product of rho (HF5)
    assert set(model.calls) == {0.0, 2.0 * 0.25}
