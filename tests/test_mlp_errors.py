"""Bad input gets a clear ValueError/TypeError naming expected and actual, and leaves params unchanged."""

import re

import numpy as np
import pytest

from manual_bp import MLP


def snapshot(net):
    return {k: v.copy() for k, v in net.params.items()}


def unchanged(net, before):
    return set(net.params) == set(before) and all(np.array_equal(net.params[k], before[k]) for k in before)


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(sizes=[3]), ValueError, "at least 2"),
        (dict(sizes=[]), ValueError, "at least 2"),
        (dict(sizes=[3, 0, 2]), ValueError, r"sizes\[1\] must be >= 1; got 0"),
        (dict(sizes=[3, -2]), ValueError, r"sizes\[1\] must be >= 1; got -2"),
        (dict(sizes=[3, 2.5]), TypeError, r"sizes\[1\] must be an integer"),
        (dict(sizes="32"), TypeError, "list of layer widths"),
        (dict(sizes=[3, 2], hidden_activation="swish"), ValueError, "hidden_activation must be one of"),
        (
            dict(sizes=[3, 2], output_activation="softmax"),
            ValueError,
            "only allowed with loss='cross_entropy'",
        ),
        (dict(sizes=[3, 2], loss="hinge"), ValueError, "loss must be one of"),
        (dict(sizes=[3, 2], loss="cross_entropy"), ValueError, "needs output_activation='softmax'"),
        (
            dict(sizes=[3, 2], loss="binary_cross_entropy", output_activation="tanh"),
            ValueError,
            "needs output_activation='sigmoid'",
        ),
        (dict(sizes=[3, 2], dtype=np.int32), TypeError, "float32 or float64; got int32"),
        (dict(sizes=[3, 2], seed=-1), ValueError, "seed must be >= 0"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        MLP(**kwargs)


def _nets():
    return {
        "se": MLP([3, 4, 2], seed=0),
        "ce": MLP([3, 4, 2], "tanh", "softmax", "cross_entropy", seed=0),
        "bce": MLP([3, 1], output_activation="sigmoid", loss="binary_cross_entropy", seed=0),
    }


X_OK = np.ones((2, 3))
BAD_CALLS = [
    (
        "se",
        np.ones((2, 4)),
        np.ones((2, 2)),
        ValueError,
        re.escape("X must have shape (N, n0=3); got (2, 4)"),
    ),
    ("se", np.ones(3), np.ones((1, 2)), ValueError, re.escape("X must have shape (N, n0=3); got (3,)")),
    ("se", np.ones((0, 3)), np.ones((0, 2)), ValueError, "N >= 1"),
    ("se", X_OK, np.ones((3, 2)), ValueError, re.escape("Y must have shape (N=2, nL=2); got (3, 2)")),
    ("se", X_OK, np.ones((2, 3)), ValueError, re.escape("Y must have shape (N=2, nL=2); got (2, 3)")),
    ("se", np.array([[1.0, np.nan, 0], [0, 0, 0]]), np.ones((2, 2)), ValueError, "X must be finite; got nan"),
    ("se", np.array([[1.0, np.inf, 0], [0, 0, 0]]), np.ones((2, 2)), ValueError, "X must be finite; got inf"),
    ("se", X_OK, np.array([[1.0, 0], [np.inf, 0]]), ValueError, "Y must be finite"),
    ("se", np.array([["a", "b", "c"]] * 2), np.ones((2, 2)), TypeError, "X must be a numeric array"),
    ("ce", X_OK, np.array([0, 2]), ValueError, r"labels must lie in \[0, 2\); got 2"),
    ("ce", X_OK, np.array([-1, 0]), ValueError, r"labels must lie in \[0, 2\); got -1"),
    ("ce", X_OK, np.array([0.0, 1.0]), TypeError, "integer class labels; got dtype float64"),
    ("ce", X_OK, np.array([[0.5, 0.6], [1, 0]]), ValueError, "probability rows"),
    ("ce", X_OK, np.array([0, 1, 1]), ValueError, re.escape("Y must have shape (N=2,); got (3,)")),
    ("bce", X_OK, np.array([0.0, 2.0]), ValueError, r"must lie in \[0, 1\]"),
]


@pytest.mark.parametrize("which, X, Y, exc, message", BAD_CALLS)
@pytest.mark.parametrize("method", ["loss", "loss_and_grad", "jvp"])
def test_bad_inputs_raise_and_leave_params_unchanged(which, X, Y, exc, message, method):
    net = _nets()[which]
    before = snapshot(net)
    args = (X, Y) if method != "jvp" else (X, Y, {k: np.zeros_like(v) for k, v in net.params.items()})
    with pytest.raises(exc, match=message):
        getattr(net, method)(*args)
    assert unchanged(net, before)


def test_forward_rejects_bad_X():
    net = MLP([3, 2], seed=0)
    with pytest.raises(ValueError, match=re.escape("X must have shape (N, n0=3); got (2, 2)")):
        net.forward(np.ones((2, 2)))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.pop("b2"), r"missing \['b2'\]"),
        (lambda t: t.update(W9=np.zeros(1)), r"unexpected \['W9'\]"),
        (
            lambda t: t.update(W1=np.zeros((3, 4))),
            re.escape("tangents['W1'] must have shape (4, 3); got (3, 4)"),
        ),
        (lambda t: t.update(b1=np.full(4, np.nan)), "must be finite"),
    ],
)
def test_jvp_rejects_wrong_tangent_dict(mutate, message):
    net = MLP([3, 4, 2], seed=0)
    before = snapshot(net)
    tangents = {k: np.zeros_like(v) for k, v in net.params.items()}
    mutate(tangents)
    with pytest.raises(ValueError, match=message):
        net.jvp(np.ones((2, 3)), np.ones((2, 2)), tangents)
    assert unchanged(net, before)


def test_jvp_rejects_non_dict():
    with pytest.raises(TypeError, match="tangents must be a dict"):
        MLP([3, 2], seed=0).jvp(np.ones((1, 3)), np.ones((1, 2)), [1, 2])
