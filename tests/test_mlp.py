"""MLP gradients (BP1-BP4) against torch autograd and central finite differences, random architectures."""

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from manual_bp.reference import mlp_jvp, mlp_loss_and_grad

from manual_bp import MLP
from manual_bp.activations import ACTIVATIONS, sigmoid, softplus
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
from tests.strategies import mlp_cases, relu_safe


@given(mlp_cases(dtypes=(np.float64, np.float32)))
def test_grads_equal_torch(case):
    net, X, Y = case
    E, g = net.loss_and_grad(X, Y, input_grad=True)
    E_t, g_t = mlp_loss_and_grad(net, X, Y, input_grad=True, dtype=np.float64)
    tol = tol_torch(net.dtype)
    assert_scalar_close(E, E_t, tol, "loss")
    for k, v in g.items():
        assert v.dtype == net.dtype, f"{k} has dtype {v.dtype}, model dtype {net.dtype}"
    assert_grads_close(g, g_t, tol, FLOOR_TORCH, what=f"{net!r} N={len(X)}: ")
    assert set(g) == set(net.params) | {"X"}


@given(mlp_cases(max_layers=3, max_width=6, max_batch=6))
def test_grads_equal_finite_differences(case):
    net, X, Y = case
    assume(relu_safe(net, X))
    _, g = net.loss_and_grad(X, Y)
    numeric = fd_grads(loss_at(net, X, Y), net.params)
    assert_grads_close(g, numeric, TOL_FD, FLOOR_FD, what=f"{net!r} vs finite differences: ")


@given(mlp_cases(), st.integers(0, 2**32 - 1))
def test_jvp_equals_grad_dot_tangent_and_torch_func_jvp(case, seed):
    net, X, Y = case
    rng = np.random.default_rng(seed)
    tangents = {k: rng.standard_normal(v.shape) for k, v in net.params.items()}
    E, dE = net.jvp(X, Y, tangents)
    _, g = net.loss_and_grad(X, Y)
    dot = sum(float(np.sum(g[k] * tangents[k])) for k in tangents)
    scale = sum(float(np.abs(g[k] * tangents[k]).sum()) for k in tangents)
    assert abs(dE - dot) <= 1e-10 * max(scale, 1e-12), f"jvp {dE!r} vs grads·tangents {dot!r}"
    E_t, dE_t = mlp_jvp(net, X, Y, tangents)
    assert_scalar_close(E, E_t, 1e-10, "loss")
    assert abs(dE - dE_t) <= 1e-10 * max(scale, 1e-12), f"jvp {dE!r} vs torch.func.jvp {dE_t!r}"


def test_jvp_with_input_tangent_equals_input_grad():
    rng = np.random.default_rng(3)
    net = MLP([3, 4, 2], "tanh", "softmax", "cross_entropy", seed=1)
    net.params = randomize_params(net.params, rng)
    X, Y = rng.standard_normal((5, 3)), rng.integers(0, 2, 5)
    tangents = {k: np.zeros_like(v) for k, v in net.params.items()}
    tangents["X"] = rng.standard_normal(X.shape)
    _, dE = net.jvp(X, Y, tangents)
    _, g = net.loss_and_grad(X, Y, input_grad=True)
    assert abs(dE - float(np.sum(g["X"] * tangents["X"]))) < 1e-12


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivatives_equal_finite_differences(name):
    f, fprime = ACTIVATIONS[name]
    z = np.linspace(-6, 6, 101) + 0.013  # off relu's kink at 0
    eps = 1e-6
    numeric = (f(z + eps) - f(z - eps)) / (2 * eps)
    np.testing.assert_allclose(fprime(z, f(z)), numeric, rtol=0, atol=1e-8)


def test_sigmoid_and_softplus_do_not_overflow_at_1e3():
    z = np.array([-1e3, -710.0, 0.0, 710.0, 1e3])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        s = sigmoid(z)
        sp = softplus(z)
    np.testing.assert_array_equal(s, [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(sp, [0.0, 0.0, np.log(2), 710.0, 1e3], rtol=1e-15, atol=1e-300)


def test_saturated_cross_entropy_is_finite_and_matches_torch():
    net = MLP([2, 3], "identity", "softmax", "cross_entropy", seed=0)
    X = np.array([[500.0, -500.0], [-400.0, 300.0]])
    Y = np.array([0, 2])
    E, g = net.loss_and_grad(X, Y)
    E_t, g_t = mlp_loss_and_grad(net, X, Y)
    assert np.isfinite(E) and all(np.isfinite(v).all() for v in g.values())
    assert_scalar_close(E, E_t, 1e-12, "loss")
    assert_grads_close(g, g_t, 1e-10, FLOOR_TORCH)


@example(d=1, N=1, seed=0)
@given(st.integers(1, 8), st.integers(1, 16), st.integers(0, 2**32 - 1))
def test_logistic_regression_is_a_one_output_net(d, N, seed):
    """The seed's logistic regression: MLP([n, 1]), sigmoid and binary cross-entropy, y of shape (N,)."""
    rng = np.random.default_rng(seed)
    net = MLP([d, 1], output_activation="sigmoid", loss="binary_cross_entropy", seed=seed)
    X = rng.standard_normal((N, d))
    y = (rng.uniform(size=N) < 0.5).astype(float)
    E, g = net.loss_and_grad(X, y)
    p = 1 / (1 + np.exp(-(X @ net.params["W1"].T + net.params["b1"])))[:, 0]
    # closed form of logistic regression's gradient: X^T (p - y) / N
    np.testing.assert_allclose(g["W1"][0], X.T @ (p - y) / N, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g["b1"][0], np.mean(p - y), rtol=1e-12, atol=1e-15)
    E_t, g_t = mlp_loss_and_grad(net, X, y)
    assert_scalar_close(E, E_t, 1e-12, "loss")
    assert_grads_close(g, g_t, 1e-10, FLOOR_TORCH)


def test_batch_loss_is_mean_of_sample_losses_and_grad_is_mean_of_sample_grads():
    """The seed's mini-batch rule: the batch gradient is the average of the samples' gradients."""
    rng = np.random.default_rng(0)
    net = MLP([3, 5, 2], "tanh", "sigmoid", "squared_error", seed=0)
    X, Y = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    E, g = net.loss_and_grad(X, Y)
    singles = [net.loss_and_grad(X[i : i + 1], Y[i : i + 1]) for i in range(4)]
    assert abs(E - np.mean([s[0] for s in singles])) < 1e-14
    for k in g:
        np.testing.assert_allclose(g[k], np.mean([s[1][k] for s in singles], axis=0), rtol=1e-12, atol=1e-15)


def test_squared_error_is_half_the_squared_norm():
    net = MLP([1, 1], output_activation="identity", seed=0)
    net.params = {"W1": np.array([[2.0]]), "b1": np.array([0.5])}
    # a = 2*1 + 0.5 = 2.5, y = 1: E = 1/2 * 1.5^2
    assert net.loss([[1.0]], [[1.0]]) == pytest.approx(1.125, abs=0, rel=1e-15)


def test_float32_stays_float32():
    net = MLP([4, 3, 2], dtype=np.float32, seed=0)
    X = np.random.default_rng(0).standard_normal((5, 4))  # float64 input is cast to the model's dtype
    assert net.forward(X).dtype == np.float32
    _, g = net.loss_and_grad(X, np.zeros((5, 2)), input_grad=True)
    assert all(v.dtype == np.float32 for v in g.values())
    assert all(v.dtype == np.float32 for v in net.params.values())


def test_initialisation_is_seeded_and_documented_scale():
    a, b = MLP([50, 400, 3], seed=7), MLP([50, 400, 3], seed=7)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["W1"], MLP([50, 400, 3], seed=8).params["W1"])
    # LeCun normal: std 1/sqrt(n_in); He for relu: sqrt(2/n_in)
    assert abs(a.params["W1"].std() * np.sqrt(50) - 1) < 0.05
    r = MLP([50, 400, 3], hidden_activation="relu", seed=7)
    assert abs(r.params["W1"].std() * np.sqrt(50 / 2) - 1) < 0.05
    assert np.abs(a.params["b1"]).max() <= 1 / np.sqrt(50) and np.abs(a.params["b1"]).min() > 0
