"""The user-facing gradient checker: right gradients pass in any dtype and at any scale, wrong ones fail and
are named, kinks are told apart from bugs, and code that writes into its inputs or is not deterministic is
refused.

The hypothesis tests draw many correct functions (float32 and float64, tiny and huge scales, relu at and
near its kink, vector-valued maps) and require no false alarm. Their example counts grow with the active
profile as max_examples^2 / 160 in all: ci (50) runs 15 cases, dev (100) 61, thorough (400) 1,000.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manual_bp import MLP, gradcheck, gradcheck_command, numerical_grad
from manual_bp.gradcheck import (
    InPlaceModificationError,
    NondeterministicError,
    assert_gradients_match,
    jvpcheck,
    rel_error,
    vjpcheck,
)
from tests.helpers import loss_at


def quadratic():
    A = np.array([[3.0, 1.0], [1.0, 2.0]])
    params = {"x": np.array([0.5, -1.5]), "c": np.array(2.0)}

    def f(p):
        x = p["x"]
        return float(0.5 * x @ A @ x + p["c"] * x.sum())

    grads = {"x": A @ params["x"] + params["c"], "c": np.array(params["x"].sum())}
    return f, params, grads


def two_layer(dtype=np.float64, scale=1.0, act="tanh", seed=0, N=4, D=3, H=4, O=2):
    """E = ||act(X W1^T + b1) W2^T + b2 - Y||^2 / 2N with its hand-derived gradient, in ``dtype``."""
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((N, D)).astype(dtype), rng.standard_normal((N, O)).astype(dtype)
    p = {
        "W1": (scale * rng.standard_normal((H, D))).astype(dtype),
        "b1": (scale * rng.standard_normal(H)).astype(dtype),
        "W2": (scale * rng.standard_normal((O, H))).astype(dtype),
        "b2": (scale * rng.standard_normal(O)).astype(dtype),
    }
    fn, dfn = ACTS[act]

    def forward(q):
        Z1 = X @ q["W1"].T + q["b1"]
        A1 = fn(Z1)
        return 0.5 * np.sum((A1 @ q["W2"].T + q["b2"] - Y) ** 2) / N, (Z1, A1)

    def f(q):
        return forward(q)[0]

    def grad(q):
        _, (Z1, A1) = forward(q)
        d2 = (A1 @ q["W2"].T + q["b2"] - Y) / N
        d1 = (d2 @ q["W2"]) * dfn(Z1, A1)
        return {"W1": d1.T @ X, "b1": d1.sum(0), "W2": d2.T @ A1, "b2": d2.sum(0)}

    return f, p, grad, X


ACTS = {
    "tanh": (np.tanh, lambda z, a: 1 - a * a),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda z, a: a * (1 - a)),
    "softplus": (lambda z: np.logaddexp(0, z), lambda z, a: 1 / (1 + np.exp(-z))),
    "sin": (np.sin, lambda z, a: np.cos(z)),
    "identity": (lambda z: z, lambda z, a: np.ones_like(z)),
    "relu": (lambda z: np.maximum(z, 0), lambda z, a: (z > 0).astype(z.dtype)),
}


@contextlib.contextmanager
def _ignore_dtype_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


@contextlib.contextmanager
def _no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


# ------------------------------------------------------------------------------------ the first version


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
    gradcheck(f, params, grads)
    gradcheck(f, params, grads, fast=True)
    assert all(np.array_equal(params[k], before[k]) for k in params)
    assert all(params[k].flags.writeable for k in params)


def test_warns_for_float32_naming_the_parameters():
    f, params, grads = quadratic()
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    with pytest.warns(RuntimeWarning, match=r"\['c', 'x'\] are not float64"):
        result = gradcheck(f, p32, grads)
    assert result.ok and any("not float64" in n for n in result.notes)


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
    with pytest.raises(TypeError, match="params must be a dict"):
        gradcheck(f, [1.0], grads)
    with pytest.raises(TypeError, match="f must be callable"):
        gradcheck(None, params, grads)
    with pytest.raises(ValueError, match="verdict must be"):
        gradcheck(f, params, grads, verdict="both!")
    with pytest.raises(ValueError, match="fast=True takes no central differences"):
        gradcheck(f, params, grads, fast=True, verdict="fd")
    with pytest.raises(ValueError, match="on_kink must be"):
        gradcheck(f, params, grads, on_kink="ignore")
    with pytest.raises(ValueError, match=r"keys \['y'\] are not in params"):
        gradcheck(f, params, grads, keys=["y"])
    with pytest.raises(TypeError, match="must return a real scalar"):
        gradcheck(lambda p: p["x"], params, grads)


# ---------------------------------------------------------------------- precision and scale, no step to tune


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_same_defaults_in_float32_and_float64(dtype):
    """Correct gradients pass with the defaults in both dtypes (no false alarm from a too-small step);
    the first version's fixed step 1e-6 fails every correct float32 gradient."""
    f, p, grad, _ = two_layer(dtype)
    g = grad(p)
    with pytest.warns(RuntimeWarning) if dtype == np.float32 else _no_warning():
        result = gradcheck(f, p, g)
    assert result.ok and result.verdict == "pass", str(result)
    wrong = dict(g, b1=g["b1"] * 1.1)
    with pytest.warns(RuntimeWarning) if dtype == np.float32 else _no_warning():
        bad = gradcheck(f, p, wrong)
    assert [r.name for r in bad.failures()] == ["b1"], str(bad)
    if dtype == np.float32:
        with pytest.warns(RuntimeWarning):
            old = gradcheck(f, p, g, eps=1e-6, tol=1e-6, floor=1e-3, verdict="fd")
        assert not old.ok  # the fixed-step rule's false alarm, for contrast


def test_float64_weights_at_the_1e6_scale():
    """Weights of order 1e-6: a step of 1e-6 moves them by 100% and fails a correct gradient; the Taylor
    test's steps are relative to the weights' scale."""
    f, p, grad, _ = two_layer(np.float64, scale=1e-6)
    g = grad(p)
    result = gradcheck(f, p, g)
    assert result.ok and result.verdict == "pass", str(result)
    assert not gradcheck(f, p, g, eps=1e-6, tol=1e-6, floor=1e-12, verdict="fd").ok
    bad = gradcheck(f, p, dict(g, W2=g["W2"] * 0.9))
    assert [r.name for r in bad.failures()] == ["W2"], str(bad)


def test_exactly_linear_and_quadratic_functions():
    """Along any direction a linear f leaves only rounding for a right gradient and an exact first-order
    remainder for a wrong one; a quadratic f has an exact second-order remainder."""
    a = np.array([1.5, -2.0, 0.25])
    lin = {"x": np.array([0.3, 0.1, -0.7])}
    r = gradcheck(lambda p: float(a @ p["x"]), lin, {"x": a})
    assert r.ok and r.reports["x"].verdict == "rounding", str(r)
    r = gradcheck(lambda p: float(a @ p["x"]), lin, {"x": a + [0, 0, 1e-6]})
    assert not r.ok and r.reports["x"].order == pytest.approx(1.0, abs=0.05), str(r)
    H = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 3.0]])
    x = lin["x"]
    r = gradcheck(lambda p: float(0.5 * p["x"] @ H @ p["x"]), lin, {"x": H @ x})
    assert r.ok and r.reports["x"].order == pytest.approx(2.0, abs=0.05), str(r)
    r = gradcheck(lambda p: float(0.5 * p["x"] @ H @ p["x"]), lin, {"x": H @ x * (1 + 1e-5)})
    assert not r.ok, str(r)


def test_float32_computation_behind_float64_parameters_is_detected():
    """f rounds to float32 inside while the parameters are float64: its precision is read off its values."""
    f, p, grad, _ = two_layer(np.float64)

    def f32(q):
        return float(np.float32(f({k: v.astype(np.float32) for k, v in q.items()})))

    result = gradcheck(f32, p, grad(p))
    assert result.ok, str(result)
    assert any("float32" in n for n in result.notes)


def test_nonfinite_gradient_fails():
    f, p, grad, _ = two_layer()
    g = grad(p)
    g["W2"] = g["W2"].copy()
    g["W2"][1, 2] = np.nan
    for fast in (False, True):
        result = gradcheck(f, p, g, fast=fast)
        assert [r.name for r in result.failures()] == ["W2"] and result.reports["W2"].index == (1, 2)


# --------------------------------------------------------------------------------------------- the report


def test_report_says_what_where_and_how_much():
    f, p, grad, _ = two_layer()
    g = grad(p)
    g["W1"] = g["W1"].copy()
    g["W1"][2, 1] += 0.05
    result = gradcheck(f, p, g)
    rep = result.reports["W1"]
    assert (rep.verdict, rep.index) == ("fail", (2, 1))
    assert rep.order == pytest.approx(1.0, abs=0.2)
    assert rep.value == pytest.approx(g["W1"][2, 1]) and rep.reference == pytest.approx(grad(p)["W1"][2, 1])
    text = str(result)
    for part in ("FAIL W1 (4, 3)", "Taylor order", "index (2, 1)", "got", "reference", "allowance", "error"):
        assert part in text, text
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["ok"] is False and doc["parameters"][0]["name"] == "W1"
    assert doc["parameters"][0]["taylor"]["verdict"] == "fail"
    with pytest.raises(AssertionError, match="FAIL W1"):
        assert_gradients_match(f, p, g)
    assert assert_gradients_match(f, p, grad(p)).ok


# ------------------------------------------------------------------------------------------------- kinks


def _relu_at_kink(dtype=np.float64, distance=0.0, seed=3):
    """A relu layer whose pre-activation (sample 0, unit 1) lies ``distance`` from the kink."""
    f, p, grad, X = two_layer(dtype, act="relu", seed=seed)
    z = float(X[0].astype(np.float64) @ p["W1"][1].astype(np.float64))
    p["b1"] = p["b1"].copy()
    p["b1"][1] = dtype(-z + distance)
    return f, p, grad


def test_relu_at_its_kink_is_reported_not_failed():
    f, p, grad = _relu_at_kink()
    result = gradcheck(f, p, grad(p))
    assert result.ok and result.verdict == "kink", str(result)
    assert set(result.kinks) <= {"W1", "b1"} and "b1" in result.kinks
    assert "not differentiable here" in str(result)
    assert (1,) in result.reports["b1"].kink_elements  # the one-sided differences name the element


def test_a_bug_away_from_the_kink_still_fails():
    f, p, grad = _relu_at_kink()
    g = grad(p)
    result = gradcheck(f, p, dict(g, W2=-g["W2"]))
    assert [r.name for r in result.failures()] == ["W2"], str(result)


def test_on_kink_skip_checks_the_rest_of_the_array():
    f, p, grad = _relu_at_kink()
    result = gradcheck(f, p, grad(p), on_kink="skip")
    assert result.ok and not result.kinks, str(result)
    assert result.reports["b1"].verdict in ("pass", "rounding", "skipped")
    assert "left out" in str(result) or result.reports["b1"].verdict == "skipped"


def test_on_kink_redraw_moves_the_point():
    f, p, grad = _relu_at_kink()
    calls = []

    def redraw(attempt):
        calls.append(attempt)
        q = dict(p, b1=p["b1"] + 0.3)
        return q, grad(q)

    result = gradcheck(f, p, grad(p), on_kink=redraw)
    assert calls == [1] and result.ok and result.verdict == "pass", str(result)
    assert any("redraw 1" in n for n in result.notes)


# ----------------------------------------------------------------------------------------------- fast mode


def _counting(f):
    calls = [0]

    def g(p):
        calls[0] += 1
        return f(p)

    return g, calls


def test_fast_mode_cost_does_not_grow_with_the_parameter_count():
    def problem(n):
        rng = np.random.default_rng(n)
        a = rng.uniform(0.5, 2.0, n)
        x0 = rng.standard_normal(n)
        return (lambda p: float(np.sum(a * np.cosh(p["x"])))), {"x": x0}, {"x": a * np.sinh(x0)}

    costs = {}
    for n in (4, 400):
        f, p, g = problem(n)
        fc, calls = _counting(f)
        assert gradcheck(fc, p, g, fast=True).ok
        costs[n] = calls[0]
    assert costs[400] <= 1.2 * costs[4], costs
    f, p, g = problem(40)
    fc, calls = _counting(f)
    gradcheck(fc, p, g)
    assert calls[0] > 2 * 40  # full mode: central differences per element


def test_fast_mode_catches_and_names_a_bug():
    f, p, grad, _ = two_layer()
    g = grad(p)
    result = gradcheck(f, p, dict(g, b2=g["b2"] + 0.01), fast=True)
    assert not result.ok and [r.name for r in result.failures()] == ["b2"], str(result)
    assert all(not d.ok for d in result.directions)
    good = gradcheck(f, p, g, fast=True)
    assert good.ok and not good.reports and len(good.directions) == 3


# -------------------------------------------------------------------------------------------------- guards


def test_f_that_writes_into_its_params_is_refused():
    f, p, grad, _ = two_layer()

    def clamps_in_place(q):
        np.clip(q["W1"], -1, 1, out=q["W1"])
        return f(q)

    with pytest.raises(InPlaceModificationError, match=r"f wrote into params\['W1'\]"):
        gradcheck(clamps_in_place, p, grad(p))


def test_grads_callable_is_called_read_only_and_twice():
    f, p, grad, _ = two_layer()
    assert gradcheck(f, p, grad).ok

    def normalises_in_place(q):
        q["b2"] /= 2
        return grad(q)

    with pytest.raises(InPlaceModificationError, match=r"grads wrote into params\['b2'\]"):
        gradcheck(f, p, normalises_in_place)
    rng = np.random.default_rng(0)
    with pytest.raises(NondeterministicError, match="grads is not deterministic"):
        gradcheck(f, p, lambda q: {k: v + 1e-3 * rng.standard_normal(v.shape) for k, v in grad(q).items()})


def test_nondeterministic_f_is_refused():
    f, p, grad, _ = two_layer()
    rng = np.random.default_rng(0)
    with pytest.raises(NondeterministicError, match="f is not deterministic"):
        gradcheck(lambda q: f(q) * (1 + 0.1 * rng.random()), p, grad(p))


# ---------------------------------------------------------------------------------------------- VJP / JVP


def _layer(dtype=np.float64, seed=0):
    """y = tanh(x A + b) (N, M) of inputs x (N, K), A (K, M), b (M,), with its VJP and JVP."""
    rng = np.random.default_rng(seed)
    inputs = {
        "x": rng.standard_normal((3, 4)).astype(dtype),
        "A": rng.standard_normal((4, 2)).astype(dtype),
        "b": rng.standard_normal(2).astype(dtype),
    }

    def f(i):
        return np.tanh(i["x"] @ i["A"] + i["b"])

    def vjp(i, u):
        d = u * (1 - f(i) ** 2)
        return {"x": d @ i["A"].T, "A": i["x"].T @ d, "b": d.sum(0)}

    def jvp(i, t):
        return (1 - f(i) ** 2) * (t["x"] @ i["A"] + i["x"] @ t["A"] + t["b"])

    return f, inputs, vjp, jvp


@pytest.mark.parametrize("fast", [False, True], ids=["full", "fast"])
def test_vjpcheck_and_jvpcheck(fast):
    f, inputs, vjp, jvp = _layer()
    r = vjpcheck(f, inputs, vjp, jvp_fn=jvp, fast=fast)
    assert r.ok and r.identity["ok"], str(r)
    assert r.identity["vjp"] == pytest.approx(r.identity["jvp"], rel=1e-12)
    assert r.identity["differences"] == pytest.approx(r.identity["jvp"], rel=1e-6)
    assert jvpcheck(f, inputs, jvp, vjp_fn=vjp, fast=fast).ok

    def vjp_bad(i, u):
        return dict(vjp(i, u), A=vjp(i, u)["A"] * 1.01)

    r = vjpcheck(f, inputs, vjp_bad, fast=fast)
    assert [x.name for x in r.failures()] == ["A"], str(r)

    def jvp_bad(i, t):  # the b term forgotten
        return (1 - f(i) ** 2) * (t["x"] @ i["A"] + i["x"] @ t["A"])

    r = jvpcheck(f, inputs, jvp_bad, fast=fast)
    assert [x.name for x in r.failures()] == ["b"], str(r)
    r = vjpcheck(f, inputs, vjp, jvp_fn=jvp_bad, fast=fast)
    assert not r.ok and r.identity["ok"] is False and "identity" in str(r)


def test_jvpcheck_names_the_output_element():
    f, inputs, vjp, jvp = _layer()

    def jvp_bad(i, t):
        out = jvp(i, t).copy()
        out[2, 1] *= 1.5
        return out

    r = jvpcheck(f, inputs, jvp_bad)
    assert not r.ok and all(rep.index == (2, 1) for rep in r.failures()), str(r)


def test_vjp_that_writes_into_its_upstream_gradient_is_refused():
    f, inputs, vjp, _ = _layer()

    def relu_style_backward(i, u):
        u *= 1 - f(i) ** 2  # dout modified in place
        return {"x": u @ i["A"].T, "A": i["x"].T @ u, "b": u.sum(0)}

    with pytest.raises(InPlaceModificationError, match=r"vjp_fn wrote into u\b"):
        vjpcheck(f, inputs, relu_style_backward)


# ---------------------------------------------------------------- hypothesis: no false alarms, many functions

PROFILE_EXAMPLES = settings().max_examples
COUNTS: dict = {}


def _examples(share: float) -> int:
    """This test's share of max_examples^2 / 160 cases (15 in ci, 1,000 in thorough)."""
    return max(2, round(share * PROFILE_EXAMPLES * PROFILE_EXAMPLES / 160))


def _count(name):
    COUNTS[name] = COUNTS.get(name, 0) + 1


@settings(max_examples=_examples(0.4))
@given(
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([np.float64, np.float32]),
    act=st.sampled_from(["tanh", "sigmoid", "softplus", "sin", "identity"]),
    log_scale=st.floats(-6, 1),
    log_loss=st.floats(-8, 8),
    fast=st.booleans(),
)
def test_no_false_alarm_on_smooth_functions(seed, dtype, act, log_scale, log_loss, fast):
    _count("smooth")
    f, p, grad, _ = two_layer(dtype, scale=10.0**log_scale, act=act, seed=seed, N=3, D=2, H=3, O=2)
    c = dtype(10.0**log_loss)
    g = {k: c * v for k, v in grad(p).items()}
    with np.errstate(all="ignore"), _ignore_dtype_warning():
        result = gradcheck(lambda q: c * f(q), p, g, fast=fast, seed=seed)
    assert result.ok, str(result)
    if dtype == np.float64 and -3 <= log_scale and -4 <= log_loss <= 4:
        assert result.verdict in ("pass", "unresolved"), str(result)  # f64 at sane scales: never a kink


@settings(max_examples=_examples(0.2))
@given(
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([np.float64, np.float32]),
    distance=st.sampled_from([0.0, 1e-12, 1e-9, 1e-6, 1e-3]),
    fast=st.booleans(),
)
def test_relu_at_and_near_the_kink_is_never_a_failure(seed, dtype, distance, fast):
    _count("relu")
    f, p, grad = _relu_at_kink(dtype, distance, seed=seed)
    with _ignore_dtype_warning():
        result = gradcheck(f, p, grad(p), fast=fast, seed=seed)
    assert result.ok, str(result)
    if distance == 0.0 and dtype == np.float64 and not fast:
        assert "b1" in result.kinks, str(result)


@settings(max_examples=_examples(0.2))
@given(seed=st.integers(0, 2**31 - 1), dtype=st.sampled_from([np.float64, np.float32]), fast=st.booleans())
def test_no_false_alarm_on_vjps_and_jvps(seed, dtype, fast):
    _count("vjp")
    f, inputs, vjp, jvp = _layer(dtype, seed)
    with _ignore_dtype_warning():
        r1 = vjpcheck(f, inputs, vjp, jvp_fn=jvp, fast=fast, seed=seed)
        r2 = jvpcheck(f, inputs, jvp, fast=fast, seed=seed)
    assert r1.ok and r2.ok, f"{r1}\n{r2}"


@settings(max_examples=_examples(0.2))
@given(
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([np.float64, np.float32]),
    act=st.sampled_from(["tanh", "sigmoid", "sin", "identity"]),
    log_scale=st.floats(-1, 0.5),
)
def test_wrong_gradients_are_caught_at_sane_scales(seed, dtype, act, log_scale):
    """The other side: a 10% error in one array fails in float64 and is never passed as right in float32."""
    _count("wrong")
    f, p, grad, _ = two_layer(dtype, scale=10.0**log_scale, act=act, seed=seed, N=3, D=2, H=3, O=2)
    g = grad(p)
    key = ["W1", "b1", "W2", "b2"][seed % 4]
    if np.abs(g[key]).max() < 1e-3 * max(np.abs(v).max() for v in g.values()):
        return  # a negligible array: its error is below any resolution
    with _ignore_dtype_warning():
        result = gradcheck(f, p, dict(g, **{key: g[key] * 1.1}), seed=seed)
    # float64 fails it; float32's steps (1e-3..1e-1) may be too coarse to tell: never a pass, though
    allowed = ("fail",) if dtype == np.float64 else ("fail", "unresolved", "kink")
    assert result.reports[key].verdict in allowed, str(result)


def test_profile_counts():
    """In the thorough profile the hypothesis tests above ran 1,000 cases or more (when they all ran)."""
    if PROFILE_EXAMPLES >= 400 and len(COUNTS) == 4:
        assert sum(COUNTS.values()) >= 1000, COUNTS


# ------------------------------------------------------------------------------------------------- the CLI

USER_MODULE = textwrap.dedent(
    """
    import numpy as np

    A = np.array([[3.0, 1.0], [1.0, 2.0]])

    def loss(p):
        return float(0.5 * p["x"] @ A @ p["x"] + p["c"][0] * p["x"].sum())

    def grad(p):
        return {"x": A @ p["x"] + p["c"][0], "c": np.array([p["x"].sum()])}

    def loss_and_grad(p):
        return loss(p), grad(p)

    def wrong_grad(p):
        return {"x": A @ p["x"], "c": np.array([p["x"].sum()])}

    def raising(p):
        raise KeyError("W9")

    def mutating(p):
        p["x"][0] = 0.0
        return loss(p)
    """
)


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    (tmp_path / "user_model_gc.py").write_text(USER_MODULE)
    np.savez(tmp_path / "params.npz", x=np.array([0.5, -1.5]), c=np.array([2.0]))
    np.savez(tmp_path / "ints.npz", x=np.array([1, 2]))
    np.save(tmp_path / "one.npy", np.zeros(2))
    (tmp_path / "broken.npz").write_bytes(b"not a zip file")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "user_model_gc", raising=False)
    return tmp_path


def _cli(*argv):
    parser = argparse.ArgumentParser(prog="manual-bp")
    sub = parser.add_subparsers(dest="command")
    gradcheck_command.add_parser(sub)
    return gradcheck_command.run(parser.parse_args(["gradcheck", *argv]))


def test_cli_exit_status_and_report(user_dir, capsys):
    assert _cli("user_model_gc:loss", "user_model_gc:grad", "--params", "params.npz") == 0
    out = capsys.readouterr().out
    assert "PASS x (2,)" in out and "PASS c (1,)" in out
    assert _cli("user_model_gc:loss", "user_model_gc:loss_and_grad", "--params", "params.npz", "--fast") == 0
    capsys.readouterr()
    assert _cli("user_model_gc:loss", "user_model_gc:wrong_grad", "--params", "params.npz", "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and [p["name"] for p in doc["parameters"] if not p["ok"]] == ["x"]
    assert _cli("user_model_gc.py:mutating", "user_model_gc:grad", "--params", "params.npz") == 1
    assert "wrote into params['x']" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["no_such_module_gc:loss", "user_model_gc:grad"], "cannot import module 'no_such_module_gc'"),
        (["user_model_gc:nope", "user_model_gc:grad"], "has no function 'nope'"),
        (["user_model_gc", "user_model_gc:grad"], "must be MODULE:FUNCTION"),
        (["missing_dir/model.py:loss", "user_model_gc:grad"], "no file missing_dir/model.py"),
        (["user_model_gc:raising", "user_model_gc:grad"], "raised KeyError"),
        (["user_model_gc:loss", "user_model_gc:grad", "--params", "nowhere.npz"], "no params file"),
        (["user_model_gc:loss", "user_model_gc:grad", "--params", "broken.npz"], "cannot read broken.npz"),
        (["user_model_gc:loss", "user_model_gc:grad", "--params", "one.npy"], "single array"),
        (["user_model_gc:loss", "user_model_gc:grad", "--params", "ints.npz"], "must be float arrays"),
    ],
    ids=[
        "missing-module",
        "missing-function",
        "no-colon",
        "missing-file",
        "function-raises",
        "no-npz",
        "bad-npz",
        "npy-not-npz",
        "int-params",
    ],
)
def test_cli_bad_input_is_one_line_exit_2(user_dir, capsys, argv, message):
    if "--params" not in argv:
        argv = [*argv, "--params", "params.npz"]
    assert _cli(*argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.out == ""


def test_cli_as_a_module_subprocess(user_dir):
    cmd = [sys.executable, "-m", "manual_bp.gradcheck_command", "user_model_gc:loss", "user_model_gc:grad"]
    done = subprocess.run(
        [*cmd, "--params", "params.npz", "--json"], capture_output=True, text=True, cwd=user_dir
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verdict"] == "pass" and done.stderr == ""
