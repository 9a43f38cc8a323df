"""Bad input to RNN, LSTM and GRU gets a clear ValueError/TypeError naming expected and actual, and leaves the
parameters unchanged."""

import numpy as np
import pytest

from manual_bp import GRU, LSTM, MLP, RNN, vanishing_gradients

T, N, D, H, K = 4, 3, 5, 2, 3
MODELS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}


def make(kind, **kw):
    return MODELS[kind](D, H, K, seed=0, **kw)


def snapshot(m):
    return {k: v.copy() for k, v in m.params.items()}


def unchanged(m, before):
    return set(m.params) == set(before) and all(np.array_equal(m.params[k], before[k]) for k in before)


def good(kind, loss="cross_entropy"):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((T, N, D))
    Y = rng.integers(0, K, (T, N)) if loss == "cross_entropy" else rng.standard_normal((T, N, K))
    return X, Y


def h0_for(kind, h=None, c=None):
    h = np.zeros((N, H)) if h is None else h
    if kind == "LSTM":
        return (h, np.zeros((N, H)) if c is None else c)
    return h


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(input_size=0), ValueError, "input_size must be >= 1; got 0"),
        (dict(hidden_size=-2), ValueError, "hidden_size must be >= 1; got -2"),
        (dict(output_size=2.5), TypeError, "output_size must be an integer"),
        (dict(hidden_size=True), TypeError, "hidden_size must be an integer"),
        (dict(loss="binary_cross_entropy"), ValueError, "loss must be one of"),
        (dict(dtype=np.int32), TypeError, "float32 or float64; got int32"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
    ],
)
def test_bad_constructor_arguments(kind, kwargs, exc, message):
    args = {"input_size": D, "hidden_size": H, "output_size": K, **kwargs}
    with pytest.raises(exc, match=message):
        MODELS[kind](**args)


def test_bad_nonlinearity():
    with pytest.raises(ValueError, match=r"nonlinearity must be one of \['relu', 'tanh'\]; got 'sigmoid'"):
        RNN(D, H, K, nonlinearity="sigmoid")


def bad_inputs(kind):
    """(label, X, Y, kwargs, exception, message) for every bad input the issues list."""
    X, Y = good(kind)
    ids = np.random.default_rng(1).integers(0, D, (T, N))
    nan_X = X.copy()
    nan_X[2, 1, 3] = np.nan
    inf_X = X.copy()
    inf_X[0, 0, 0] = np.inf
    bad_ids = ids.copy()
    bad_ids[1, 2] = D
    neg_ids = ids.copy()
    neg_ids[0, 1] = -1
    bad_Y = Y.copy()
    bad_Y[3, 0] = K
    cases = [
        ("X rank 2 float", X[0], Y, {}, ValueError, r"X must have shape \(T, N, D=5\).*got \(3, 5\)"),
        ("X rank 4", X[None], Y, {}, ValueError, r"X must have shape \(T, N, D=5\)"),
        ("X wrong D", X[..., :4], Y, {}, ValueError, r"X must have shape \(T, N, D=5\).*got \(4, 3, 4\)"),
        ("T = 0", X[:0], Y[:0], {}, ValueError, r"X must have T >= 1; got shape \(0, 3, 5\)"),
        ("N = 0", X[:, :0], Y[:, :0], {}, ValueError, r"X must have N >= 1"),
        ("ids T = 0", ids[:0], Y[:0], {}, ValueError, r"X must have T >= 1; got shape \(0, 3\)"),
        ("ids rank 3", ids[..., None], Y, {}, ValueError,
         r"integer token ids must have shape \(T, N\); got \(4, 3, 1\)"),
        ("ids rank 1", ids[0], Y, {}, ValueError, r"integer token ids must have shape \(T, N\); got \(3,\)"),
        ("token = D", bad_ids, Y, {}, ValueError,
         r"X token ids must lie in \[0, D=5\); got 5 at index \(1, 2\)"),
        ("token < 0", neg_ids, Y, {}, ValueError,
         r"X token ids must lie in \[0, D=5\); got -1 at index \(0, 1\)"),
        ("X NaN", nan_X, Y, {}, ValueError, r"X must be finite; got nan at index \(2, 1, 3\)"),
        ("X inf", inf_X, Y, {}, ValueError, r"X must be finite; got inf"),
        ("X strings", np.array([["a"]]), Y, {}, TypeError, "X must be a numeric array"),
        ("Y = K", X, bad_Y, {}, ValueError, r"Y labels must lie in \[0, K=3\); got 3 at index \(3, 0\)"),
        ("Y floats", X, Y.astype(float), {}, TypeError, "Y must hold integer class labels"),
        ("Y shape", X, Y[:, :2], {}, ValueError, r"Y must have shape \(T=4, N=3\); got \(4, 2\)"),
        ("Y T", X, Y[:3], {}, ValueError, r"Y must have shape \(T=4, N=3\); got \(3, 3\)"),
        ("h0 shape", X, Y, {"h0": h0_for(kind, h=np.zeros((N, H + 1)))}, ValueError,
         r"h0 must have shape \(N=3, H=2\); got \(3, 3\)"),
        ("h0 batch", X, Y, {"h0": h0_for(kind, h=np.zeros((N + 1, H)))}, ValueError,
         r"h0 must have shape \(N=3, H=2\); got \(4, 2\)"),
        ("h0 NaN", X, Y, {"h0": h0_for(kind, h=np.full((N, H), np.nan))}, ValueError, "h0 must be finite"),
        ("mask shape", X, Y, {"mask": np.ones((T, N + 1), dtype=bool)}, ValueError,
         r"mask must have shape \(T=4, N=3\); got \(4, 4\)"),
        ("mask floats", X, Y, {"mask": np.ones((T, N))}, TypeError, "mask must be a boolean array"),
    ]
    if kind == "LSTM":
        cases += [
            ("LSTM h0 array", X, Y, {"h0": np.zeros((N, H))}, TypeError,
             r"h0 must be None or a tuple \(h0, c0\) of \(N, H\) arrays or None; got ndarray"),
            ("LSTM h0 triple", X, Y, {"h0": (None, None, None)}, TypeError, "got tuple of length 3"),
            ("c0 shape", X, Y, {"h0": (None, np.zeros((N, 1)))}, ValueError,
             r"c0 must have shape \(N=3, H=2\); got \(3, 1\)"),
            ("c0 inf", X, Y, {"h0": (None, np.full((N, H), np.inf))}, ValueError, "c0 must be finite"),
        ]
    return cases


def all_cases():
    for kind in MODELS:
        for label, X, Y, kw, exc, msg in bad_inputs(kind):
            yield pytest.param(kind, X, Y, kw, exc, msg, id=f"{kind}-{label}")


@pytest.mark.parametrize("kind, X, Y, kw, exc, message", list(all_cases()))
def test_bad_input_raises_and_leaves_params_unchanged(kind, X, Y, kw, exc, message):
    m = make(kind)
    before = snapshot(m)
    with pytest.raises(exc, match=message):
        m.loss_and_grad(X, Y, **kw)
    with pytest.raises(exc, match=message):
        m.loss(X, Y, **kw)
    if "mask" not in kw and not message.startswith("Y"):
        with pytest.raises(exc, match=message):
            m.forward(X, h0=kw.get("h0"))
    if "mask" not in kw:
        with pytest.raises(exc, match=message):
            vanishing_gradients(m, X, Y, h0=kw.get("h0"))
    tangents = {k: np.zeros_like(v) for k, v in m.params.items()}
    with pytest.raises(exc, match=message):
        m.jvp(X, Y, tangents, **kw)
    assert unchanged(m, before)


@pytest.mark.parametrize("kind", list(MODELS))
def test_squared_error_targets(kind):
    m = make(kind, loss="squared_error")
    before = snapshot(m)
    X, Y = good(kind, "squared_error")
    with pytest.raises(ValueError, match=r"Y must have shape \(T=4, N=3, K=3\); got \(4, 3\)"):
        m.loss_and_grad(X, Y[..., 0])
    Y_nan = Y.copy()
    Y_nan[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="Y must be finite; got nan at index"):
        m.loss_and_grad(X, Y_nan)
    # a masked-out target is ignored, NaN included
    mask = np.ones((T, N), dtype=bool)
    mask[1, 1] = False
    E, g = m.loss_and_grad(X, Y_nan, mask=mask)
    assert np.isfinite(E) and all(np.isfinite(v).all() for v in g.values())
    assert unchanged(m, before)


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize(
    "truncate, exc, message",
    [
        (-1, ValueError, "truncate must be >= 0; got -1"),
        (1.5, TypeError, "truncate must be an integer; got float 1.5"),
        (True, TypeError, "truncate must be an integer; got bool"),
        ("2", TypeError, "truncate must be an integer; got str"),
    ],
)
def test_bad_truncate(kind, truncate, exc, message):
    m = make(kind)
    before = snapshot(m)
    X, Y = good(kind)
    with pytest.raises(exc, match=message):
        m.loss_and_grad(X, Y, truncate=truncate)
    assert unchanged(m, before)


@pytest.mark.parametrize("kind", list(MODELS))
def test_bad_tangents(kind):
    m = make(kind)
    before = snapshot(m)
    X, Y = good(kind)
    tangents = {k: np.zeros_like(v) for k, v in m.params.items()}
    with pytest.raises(ValueError, match=r"tangents must have keys .*missing \['V'\]"):
        m.jvp(X, Y, {k: v for k, v in tangents.items() if k != "V"})
    with pytest.raises(ValueError, match=r"tangents\['W'\] must have shape"):
        m.jvp(X, Y, {**tangents, "W": np.zeros((1, 1))})
    with pytest.raises(ValueError, match=r"unexpected \['x0'\]"):
        m.jvp(X, Y, {**tangents, "x0": np.zeros((N, H))})
    with pytest.raises(ValueError, match=r"tangents\['h0'\] must have shape \(N=3, H=2\)"):
        m.jvp(X, Y, {**tangents, "h0": np.zeros((N, H + 1))})
    with pytest.raises(TypeError, match="tangents must be a dict"):
        m.jvp(X, Y, [1, 2])
    assert unchanged(m, before)


def test_vanishing_gradients_needs_a_recurrent_model():
    with pytest.raises(TypeError, match="model must be an RNN, LSTM or GRU; got MLP"):
        vanishing_gradients(MLP([2, 2]), np.zeros((1, 1, 2)), np.zeros((1, 1), dtype=int))
