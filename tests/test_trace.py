"""``model.trace``: every entry against torch's own modules (``manual_bp.reference.trace``: retain_grad on
layers and state tensors, the augmented-input e_t for the gate deltas), and loss/grads bit for bit equal to
``loss_and_grad`` with the same arguments."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from manual_bp.reference import trace as torch_trace

import manual_bp as mb
from manual_bp import harness
from manual_bp.harness import allowance, assert_grads_close
from manual_bp.trace import Trace

from .strategies import DrawPick, ci_examples, mlp_cases, random_state

ROOT = Path(__file__).resolve().parent.parent
#: entries the torch oracle does not produce: the window is checked against its definition, the masks against
#: what was passed
NOT_FROM_TORCH = re.compile(r"^(window|dropout_mask_l\d+)$")


def assert_bitwise_as_loss_and_grad(model, tr, E, grads):
    assert tr.loss == E
    assert list(tr.grads) == list(grads)
    for k in grads:
        assert np.array_equal(tr.grads[k], grads[k]), k


def assert_trace_matches_torch(model, tr, ref):
    tol = allowance(np.float64)
    ours = {k: np.asarray(v, dtype=np.float64) for k, v in tr.items() if not NOT_FROM_TORCH.match(k)}
    assert set(ours) <= set(ref), sorted(set(ours) - set(ref))
    assert_grads_close(ours, {k: ref[k] for k in ours}, tol.torch, tol.torch_floor, what="trace ")


# ---------------------------------------------------------------------------------------------- the MLP
@settings(max_examples=ci_examples(15))
@given(case=mlp_cases(max_layers=4, max_width=8, max_batch=6))
def test_mlp_trace_matches_torch_and_loss_and_grad(case):
    net, X, Y = case
    for input_grad in (False, True):
        tr = net.trace(X, Y, input_grad=input_grad)
        E, grads = net.loss_and_grad(X, Y, input_grad=input_grad)
        assert_bitwise_as_loss_and_grad(net, tr, E, grads)
        assert_trace_matches_torch(net, tr, torch_trace.trace(net, X, Y, input_grad=input_grad))
        L = net.L
        expected = {"a^(0)", "E"} | {f"{n}^({l})" for l in range(1, L + 1) for n in ("z", "a", "delta")}
        expected |= {f"dE/d{p}^({l})" for l in range(1, L + 1) for p in ("W", "b")}
        expected |= {f"dE/da^({l})" for l in range(1 - input_grad, L)}
        assert set(tr) == expected


def test_mlp_trace_entries_are_the_derivation():
    """The named relations of BP1-BP4 hold between the entries (a reader's check of the names)."""
    net = mb.MLP([3, 4, 2], seed=0)
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((5, 3)), rng.random((5, 2))
    tr = net.trace(X, Y)
    s = tr["a^(2)"]
    np.testing.assert_allclose(tr["delta^(2)"], (s - Y) * s * (1 - s) / 5, rtol=1e-12)  # BP1
    np.testing.assert_allclose(tr["dE/da^(1)"], tr["delta^(2)"] @ net.params["W2"], rtol=1e-12)  # BP2
    np.testing.assert_allclose(tr["dE/dW^(1)"], tr["delta^(1)"].T @ X, rtol=1e-12)  # BP3
    np.testing.assert_allclose(tr["dE/db^(2)"], tr["delta^(2)"].sum(0), rtol=1e-12)  # BP4
    names = ("z^(1)", "a^(1)", "delta^(2)", "delta^(1)", "dE/dW^(1)", "dE/db^(1)")
    assert [tr.equation(k) for k in names] == ["F1", "F2", "BP1", "BP2", "BP3", "BP4"]
    np.testing.assert_array_equal(tr["a^(2)"], net.forward(X))


# ---------------------------------------------------------------------------------------------- recurrent
def _check_recurrent(problem):
    m = problem.model
    kw = problem.kwargs()
    tr = m.trace(problem.X, problem.Y, **kw)
    E, grads = m.loss_and_grad(problem.X, problem.Y, **kw)
    assert_bitwise_as_loss_and_grad(m, tr, E, grads)
    T = np.shape(problem.X)[1 if m.batch_first else 0]
    k = T - 1 if kw.get("truncate") is None else min(kw["truncate"], T - 1)
    t = np.arange(1, T + 1)
    np.testing.assert_array_equal(tr["window"], np.stack([np.maximum(1, t - k), t], axis=1))
    for l, keep in enumerate(kw.get("dropout_masks") or []):
        np.testing.assert_array_equal(tr[f"dropout_mask_l{l}"], keep * m.dtype.type(1 / (1 - m.dropout)))
    ref = torch_trace.trace(m, problem.X, problem.Y, **kw)
    assert ref["pinning_error"] < 1e-13  # the gate entries rebuild torch's own states
    assert_trace_matches_torch(m, tr, ref)
    return tr


@settings(max_examples=ci_examples(25))
@given(data=__import__("hypothesis").strategies.data())
def test_recurrent_trace_matches_torch_and_loss_and_grad(data):
    problem = harness.recurrent_problem(DrawPick(data.draw), dtypes=(np.float64,), max_T=6, max_N=3,
                                        max_size=4, stacked=True, max_layers=2, dropout=True,
                                        batch_first=True)
    _check_recurrent(problem)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("truncate", [None, 1])
def test_each_family_full_and_truncated(kind, truncate):
    """Every family with a non-zero initial state, a mask and both of torch's biases, full and truncated."""
    rng = np.random.default_rng(7)
    m = getattr(mb, kind)(3, 4, 3, seed=2)
    T, N = 5, 2
    X, Y = rng.standard_normal((T, N, 3)), rng.integers(0, 3, (T, N))
    mask = rng.random((T, N)) > 0.3
    h0 = random_state(m, N, rng)
    tr = _check_recurrent(harness.Problem(m, X, Y, h0=h0, mask=mask, truncate=truncate))
    state = m.STATE_NAMES["h"]
    np.testing.assert_array_equal(tr[f"{state}_t"], m.forward(X, h0=h0)[1][0] if kind == "LSTM"
                                  else m.forward(X, h0=h0)[1])
    h0_grad = tr.grads["h0"]
    np.testing.assert_array_equal(tr[f"dE/d{state}_t"][0], h0_grad)  # (B4) at index 0


def test_lstm_projection_and_token_ids():
    rng = np.random.default_rng(3)
    m = mb.LSTM(5, 4, 3, seed=1, proj_size=2, num_layers=2)
    T, N = 4, 3
    X, Y = rng.integers(0, 5, (T, N)), rng.integers(0, 3, (T, N))
    tr = _check_recurrent(harness.Problem(m, X, Y, h0=random_state_torch(m, N, rng), truncate=2))
    assert tr["m_t"].shape == (T, N, 4) and tr["h_t_l1"].shape == (T + 1, N, 2)
    np.testing.assert_array_equal(tr["x_t"], X)


def random_state_torch(model, N, rng):
    parts = tuple(rng.standard_normal((model.num_layers * model.num_directions, N, model._part_size(p)))
                  for p in model.STATES)
    return model.public_state(parts)


# ---------------------------------------------------------------------------------------------- the API
def _small_rnn():
    rng = np.random.default_rng(0)
    m = mb.RNN(2, 3, 2, seed=0)
    return m, rng.standard_normal((4, 2, 2)), rng.integers(0, 2, (4, 2))


def test_trace_is_read_only_and_names_what_it_holds():
    m, X, Y = _small_rnn()
    tr = m.trace(X, Y)
    assert isinstance(tr, Trace) and tr.model == "RNN"
    with pytest.raises(ValueError):
        tr["s_t"][0, 0, 0] = 1.0
    with pytest.raises(KeyError, match="'h_t' is not in this RNN trace; it holds: x_t, s_t, z_t"):
        tr["h_t"]
    assert tr.equation("delta_t") == "R3" and "dE/ds_t" in tr.meaning("delta_t")
    rows = tr.table().splitlines()
    assert rows[0].split() == ["name", "shape", "eq.", "meaning"] and len(rows) == len(tr) + 1
    assert all(row.split()[0] == name for row, name in zip(rows[1:], tr))
    assert repr(tr).startswith(f"<Trace of RNN: loss={tr.loss:.6g}, {len(tr)} entries: x_t, s_t")


def test_every_equation_tag_is_a_tag_of_the_package():
    """A trace's tags are the docstrings' equation tags (or input/loss), so a reader can look each one up."""
    tags = set()
    for path in (ROOT / "manual_bp").glob("*.py"):
        tags |= set(re.findall(r"^\s*\(([A-Z]+\d*)\)", path.read_text(encoding="utf-8"), flags=re.M))
    net = mb.MLP([2, 3, 2], seed=0)
    trs = [net.trace(np.ones((2, 2)), np.zeros((2, 2)), input_grad=True)]
    rng = np.random.default_rng(0)
    for kind in ("RNN", "LSTM", "GRU"):
        m = getattr(mb, kind)(2, 3, 2, seed=0, num_layers=2, dropout=0.5)
        trs.append(m.trace(rng.standard_normal((3, 2, 2)), rng.integers(0, 2, (3, 2)), truncate=1,
                           dropout_masks=m.draw_dropout_masks(3, 2)))
    trs.append(mb.LSTM(2, 3, 2, seed=0, proj_size=1).trace(rng.standard_normal((3, 2, 2)),
                                                           rng.integers(0, 2, (3, 2))))
    used = {tr.equation(k) for tr in trs for k in tr}
    assert used - {"input", "loss"} <= tags, sorted(used - {"input", "loss"} - tags)


def test_documented_names():
    """Every entry's name appears in manual_bp/trace.py's docstring (a layer index as (l), (0) or (L); a
    parameter's gradient as dE/d<param>)."""
    import manual_bp.trace as trace_module

    doc = trace_module.__doc__
    rng = np.random.default_rng(0)
    net = mb.MLP([2, 2, 2], seed=0)
    names = set(net.trace(np.ones((1, 2)), np.zeros((1, 2)), input_grad=True))
    params = set()
    for kind in ("RNN", "LSTM", "GRU"):
        m = getattr(mb, kind)(2, 3, 2, seed=0)
        names |= set(m.trace(rng.standard_normal((2, 1, 2)), rng.integers(0, 2, (2, 1))))
        params |= set(m.params)
    missing = []
    for name in names:
        if name.startswith("dE/d") and name[4:] in params:
            continue
        forms = {re.sub(r"\^\(\d+\)", f"^({i})", name) for i in ("l", "0", "L")}
        if not any(f in doc for f in forms):
            missing.append(name)
    assert not missing, sorted(missing)
    assert "dE/d<param>" in doc


def test_return_state_and_no_side_effects():
    m = mb.LSTM(2, 3, 2, seed=0)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((3, 2, 2)), rng.integers(0, 2, (3, 2))
    before = {k: v.copy() for k, v in m.params.items()}
    tr = m.trace(X, Y, return_state=True, workspace=mb.Workspace())
    _, _, state = m.loss_and_grad(X, Y, return_state=True)
    for a, b in zip(tr.state, state):
        np.testing.assert_array_equal(a, b)
    assert all(np.array_equal(before[k], m.params[k]) for k in before)
    assert m.trace(X, Y).state is None


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"snapshots": "sqrt"}, ValueError, "trace keeps every state and takes no snapshots"),
        ({"truncate": -1}, ValueError, "truncate"),
        ({"mask": np.ones((2, 2), bool)}, ValueError, "mask"),
        ({"workspace": "yes"}, TypeError, "workspace must be a manual_bp.Workspace"),
    ],
)
def test_recurrent_trace_refuses_bad_input(kwargs, error, match):
    m, X, Y = _small_rnn()
    with pytest.raises(error, match=match):
        m.trace(X, Y, **kwargs)


def test_trace_needs_a_head_and_checks_like_loss_and_grad():
    with pytest.raises(TypeError, match="trace needs an output layer"):
        mb.RNN(2, 3).trace(np.zeros((2, 1, 2)), np.zeros((2, 1), int))
    net = mb.MLP([2, 2], seed=0)
    with pytest.raises(ValueError, match="X"):
        net.trace(np.zeros((3, 5)), np.zeros((3, 2)))


# ------------------------------------------------------------------------------------------ manual-bp check
def test_check_has_a_trace_family_that_can_fail(monkeypatch):
    """``manual-bp check --models trace``: each family of model in turn, every entry against torch; a planted
    error in one entry fails it."""
    from manual_bp.check import run_check

    out = []
    assert run_check(n=4, families=["trace"], out=out.append, as_json=True) == 0
    rows = json.loads(out[0])["rows"]
    assert [r["model"] for r in rows] == ["MLP", "RNN", "LSTM", "GRU"]
    assert all(r["arch"].endswith(" trace") and r["torch_ok"] and r["fd_ok"] for r in rows)
    real = harness._trace_entries

    def planted(tr):
        entries = real(tr)
        name = "delta^(1)" if "delta^(1)" in entries else next(k for k in entries if k.startswith("da_")
                                                               or k == "delta_t")
        entries[name] = entries[name] * 1.001
        return entries

    monkeypatch.setattr(harness, "_trace_entries", planted)
    out.clear()
    assert run_check(n=4, families=["trace"], out=out.append, as_json=True) == 1
    assert not any(r["torch_ok"] for r in json.loads(out[0])["rows"])
