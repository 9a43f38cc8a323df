"""The user-facing gradient checker: it passes right gradients, fails wrong ones, and says where."""

import numpy as np
import pytest

from manual_bp import MLP, gradcheck, numerical_grad
from manual_bp.gradcheck import rel_error
from tests.helpers import loss_at


def quadratic():
    A = np.array([[3.0, 1.0], [1.0, 2.0]])
    params = {"x": np.array([0.5, -1.5]), "c": np.array(2.0)}

    def f(p):
        x = p["x"]
        return float(0.5 * x @ A @ x + p["c"] * x.sum())

    grads = {"x": A @ params["x"] + params["c"], "c": np.array(params["x"].sum())}
    return f, params, grads


def test_right_gradient_passes():
    f, params, grads = quadratic()
    result = gradcheck(f, params, grads)
    assert result.ok, str(result)
    assert result.max_error < 1e-8


def test_wrong_gradient_fails_and_names_the_place():
    f, params, grads = quadratic()
    wrong = {k: v.copy() for k, v in grads.items()}
    wrong["x"][1] += 1e-3
    result = gradcheck(f, params, wrong)
    assert not result.ok
    report = result.reports["x"]
    assert not report.ok and result.reports["c"].ok
    assert report.index == (1,)
    assert report.value == pytest.approx(wrong["x"][1]) and report.reference == pytest.approx(grads["x"][1])
    text = str(result)
    assert "FAIL x (2,)" in text and "index (1,)" in text and "allowance" in text


def test_wrong_mlp_gradient_fails():
    """A classic bug, BP3 without the transpose's orientation swap (W's rows permuted), must be caught."""
    rng = np.random.default_rng(0)
    net = MLP([3, 4, 2], "tanh", "sigmoid", seed=0)
    X, Y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    _, g = net.loss_and_grad(X, Y)

    f = loss_at(net, X, Y)
    assert gradcheck(f, net.params, g).ok
    bad = dict(g, W1=g["W1"][::-1])
    result = gradcheck(f, net.params, bad)
    assert not result.ok and [r.name for r in result.failures()] == ["W1"]
    bad = dict(g, b2=2 * g["b2"])  # BP4 with a wrong factor
    assert [r.name for r in gradcheck(f, net.params, bad).failures()] == ["b2"]


def test_zero_gradients_give_zero_error_not_nan():
    rep = rel_error("z", np.zeros(3), np.zeros(3), tol=1e-6, floor=1e-3)
    assert rep.error == 0.0 and rep.ok
    rep = rel_error("z", np.full(3, np.nan), np.zeros(3), tol=1e-6, floor=1e-3)
    assert not rep.ok and rep.error == float("inf")


def test_params_are_not_modified():
    f, params, grads = quadratic()
    before = {k: v.copy() for k, v in params.items()}
    numerical_grad(f, params)
    assert all(np.array_equal(params[k], before[k]) for k in params)


def test_warns_for_float32():
    f, params, grads = quadratic()
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    with pytest.warns(RuntimeWarning, match="not float64"):
        gradcheck(f, p32, grads, tol=1e-2)


def test_bad_arguments():
    f, params, grads = quadratic()
    with pytest.raises(TypeError, match="params must be a dict"):
        numerical_grad(f, [1.0])
    with pytest.raises(ValueError, match="eps must be a positive number"):
        numerical_grad(f, params, eps=0)
    with pytest.raises(ValueError, match="lacks keys"):
        gradcheck(f, params, {"x": grads["x"]})
    with pytest.raises(ValueError, match="shape"):
        gradcheck(f, params, {"x": grads["x"][:1], "c": grads["c"]})
