"""No hidden state on a model: after any call it pickles, deep-copies and holds no more than its parameters.

The reuse of large per-call arrays that the benchmarks need is an explicit ``Workspace`` that the caller owns
(``fit`` and ``fit_stream`` make one per run).
"""

import copy
import pickle
import sys

import numpy as np
import pytest

from manual_bp import GRU, LSTM, MLP, RNN, Workspace

RECURRENT = [RNN, LSTM, GRU]


def problem(cls, T=6, N=3, seed=1):
    rng = np.random.default_rng(seed)
    m = cls(4, 5, 3, seed=0)
    X, Y = rng.standard_normal((T, N, 4)), rng.integers(0, 3, (T, N))
    return m, X, Y


def held_bytes(model) -> int:
    """Bytes of every NumPy array reachable from the model's attributes (one level of dicts and tuples)."""
    total = 0
    for value in vars(model).values():
        if isinstance(value, dict):
            items = value.values()
        else:
            items = value if isinstance(value, (list, tuple)) else [value]
        total += sum(a.nbytes for a in items if isinstance(a, np.ndarray))
    return total


@pytest.mark.parametrize("cls", RECURRENT)
@pytest.mark.parametrize("call", ["loss", "loss_and_grad", "forward", "jvp"])
def test_a_model_that_ran_pickles_deep_copies_and_keeps_only_its_params(cls, call):
    m, X, Y = problem(cls)
    params_bytes = sum(p.nbytes for p in m.params.values())
    attrs = set(vars(m))
    if call == "forward":
        m.forward(X)
    elif call == "jvp":
        m.jvp(X, Y, {k: np.ones_like(v) for k, v in m.params.items()})
    else:
        getattr(m, call)(X, Y)
    assert set(vars(m)) == attrs, f"{call} added attributes {set(vars(m)) - attrs}"
    assert held_bytes(m) == params_bytes
    for clone in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert clone.loss(X, Y) == m.loss(X, Y)


def test_mlp_pickles_after_a_call():
    net = MLP([3, 4, 2], seed=0)
    X, Y = np.ones((2, 3)), np.zeros((2, 2))
    net.loss_and_grad(X, Y)
    assert pickle.loads(pickle.dumps(net)).loss(X, Y) == net.loss(X, Y)


@pytest.mark.parametrize("cls", RECURRENT)
def test_a_workspace_changes_no_result_and_returns_nothing_it_keeps(cls):
    m, X, Y = problem(cls)
    ws = Workspace()
    E0, g0, s0 = m.loss_and_grad(X, Y, return_state=True)
    for _ in range(2):  # the second call reuses the first call's arrays
        E, g, s = m.loss_and_grad(X, Y, return_state=True, workspace=ws)
        assert E == E0
        for k in g0:
            np.testing.assert_array_equal(g[k], g0[k])
        for a, b in zip(m.state_parts(s), m.state_parts(s0)):
            np.testing.assert_array_equal(a, b)
    assert ws.arrays and ws.nbytes > 0
    kept = [a for a in ws.arrays.values()]
    returned = list(g.values()) + list(m.state_parts(s))
    for r in returned:
        assert not any(np.shares_memory(r, k) for k in kept), "a returned array lives in the workspace"
    assert m.loss(X, Y, workspace=ws) == m.loss(X, Y)


def test_a_workspace_pickles_and_deep_copies_empty():
    m, X, Y = problem(LSTM)
    ws = Workspace()
    m.loss_and_grad(X, Y, workspace=ws)
    for clone in (pickle.loads(pickle.dumps(ws)), copy.deepcopy(ws)):
        assert clone.arrays == {} and clone.nbytes == 0
    ws.clear()
    assert ws.nbytes == 0


def test_workspace_must_be_a_workspace():
    m, X, Y = problem(RNN)
    with pytest.raises(TypeError, match="workspace must be a manual_bp.Workspace or None; got dict"):
        m.loss_and_grad(X, Y, workspace={})


def test_the_model_holds_no_reference_to_a_call_s_arrays():
    m, X, Y = problem(GRU, T=50, N=8)
    E, g = m.loss_and_grad(X, Y)
    refs = sys.getrefcount(g["W"])
    del E
    assert refs == 2  # the dict entry and getrefcount's argument: nothing on the model
