"""Checkpointed BPTT and RTRL (``manual_bp.long_bptt``) against full BPTT, torch's jacfwd, revolve's optimum.

Oracles: the schedules' forward-step counts against a dynamic programme over every split (not the closed
form they are built from) and a symbolic run of their actions; the gradients against our full BPTT (itself
checked against torch in test_recurrent.py) and against torch's autograd; RTRL's final influence matrix
against ``torch.func.jacfwd`` of the final state of torch's own nn.RNN/LSTM/GRU holding our weights.
"""

from __future__ import annotations

import os
import tracemalloc
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from manual_bp.reference import recurrent_loss_and_grad
from manual_bp.reference.long_bptt import final_state_jacobian

from manual_bp import GRU, LSTM, RNN, long_bptt
from manual_bp.harness import allowance, assert_grads_close, assert_scalar_close, randomize_params
from manual_bp.long_bptt import (
    VALIDATE_BLOCK,
    Schedule,
    loss_and_grad_checkpointed,
    revolve_beta,
    revolve_forward_steps,
    revolve_repetitions,
    rtrl,
)
from tests.helpers import FLOOR_TORCH
from tests.strategies import random_state, recurrent_cases, recurrent_inputs, recurrent_targets

THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
MAX_T = 200 if THOROUGH else 60
#: checkpointing sums the same terms in another order (segment by segment): float64 agrees to rounding
TOL_REPLAY = 1e-14
#: RTRL sums the same chain-rule products in another order and association: float64 agrees to rounding
TOL_RTRL = 1e-12
MODELS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}


def examples(n):
    """``n`` examples in the default ``ci`` profile (50), scaled with the profile's count (thorough: 8n)."""
    return max(1, n * settings().max_examples // 50)


def problem(kind, T, N=2, D=3, H=4, K=3, seed=0, ids=False, mask=False, dtype=np.float64):
    kw = {"nonlinearity": "tanh"} if kind == "RNN" else {}
    m = MODELS[kind](D, H, K, dtype=dtype, seed=seed, **kw)
    rng = np.random.default_rng(seed)
    m.params = randomize_params(m.params, rng)
    X, Y = recurrent_inputs(m, T, N, rng, ids), recurrent_targets(m, T, N, rng)
    h0 = random_state(m, N, rng)
    M = rng.uniform(size=(T, N)) < 0.7 if mask else None
    return m, X, Y, h0, M


def flat(state):
    return state if isinstance(state, tuple) else (state,)


def assert_same_gradient(model, case, ours, tol, what):
    """``ours = (E, grads, state)`` against full BPTT of the same model on the same case, within ``tol``."""
    E, g, s = model.loss_and_grad(case.X, case.Y, h0=case.h0, mask=case.mask, return_state=True)
    assert_scalar_close(ours[0], E, tol, f"{what} loss")
    assert_grads_close(ours[1], g, tol, FLOOR_TORCH, what=f"{what} ")
    for a, b in zip(flat(ours[2]), flat(s)):
        assert_grads_close({"state": a}, {"state": b}, tol, FLOOR_TORCH, what=f"{what} final ")


# ------------------------------------------------------------------------------------------------ schedules
@lru_cache(maxsize=None)
def fewest_forward_steps(l, s):
    """The optimum over every schedule of the recursive form, by dynamic programming over the first split."""
    if l <= 1:
        return 0
    if s == 1:
        return l * (l - 1) // 2  # advance from the one snapshot to each step in turn
    return min(m + fewest_forward_steps(l - m, s - 1) + fewest_forward_steps(m, s) for m in range(1, l))


def run_symbolically(schedule):
    """Carry out the actions on step indices: every turn in order T..1 from the current state, restores only
    of stored states, at most ``snapshots`` stored at once. Returns (advanced steps, most stored at once)."""
    stored, current, advanced, most, next_turn = set(), 0, 0, 0, schedule.T
    for i, (kind, a, b) in enumerate(schedule):
        if kind == "takeshot":
            ok = current == a and a not in stored
            stored.add(a)
        elif kind == "restore":
            ok, current = a in stored, a
        elif kind == "free":
            ok = a in stored
            stored.discard(a)
        elif kind == "advance":
            ok = current == a and b > a
            advanced, current = advanced + b - a, b
        else:
            ok = (kind == ("firsturn" if next_turn == schedule.T else "youturn") and current == a
                  and b == next_turn
                  and (b - a == schedule.segment if kind == "youturn" else 0 < b - a <= schedule.segment))
            next_turn, current = a, None
        if not ok:
            raise AssertionError(f"action {i} ({kind} {a}->{b}) of {schedule!r} is not possible here")
        most = max(most, len(stored))
    assert next_turn == 0, f"{schedule!r} ends at state {next_turn}, not 0"
    return advanced, most


def test_closed_form_is_the_optimum():
    """(RV3) r l - beta(s+1, r-1) is the best over every split, by dynamic programming (RV4 picks one)."""
    for s in range(1, 7):
        for l in range(1, 70):
            assert revolve_forward_steps(l, s) == fewest_forward_steps(l, s), (l, s)
            r = revolve_repetitions(l, s)
            assert revolve_beta(s, r - 1) < l <= revolve_beta(s, r) or l <= 1, (l, s, r)


@pytest.mark.parametrize("s", [1, 2, 3, 5, 12])
def test_revolve_schedule_takes_the_fewest_forward_steps(s):
    """Every T up to 100 and a long one: the actions advance exactly t(T, s) steps with <= s snapshots."""
    for T in list(range(1, 101 if not THOROUGH else 400)) + [1237]:
        sched = Schedule(T, s)
        advanced, most = run_symbolically(sched)
        assert advanced == sched.forward_steps == revolve_forward_steps(T, s), (T, s)
        assert most <= s, (T, s, most)


def test_revolve_schedule_edges():
    """Budgets beyond T (every step advanced once, but the last), of 1 (T(T-1)/2), T = 1 (no advance)."""
    for T in range(1, 40):
        for s in (T - 1, T, T + 1, 10 * T):
            if s >= 1:
                assert run_symbolically(Schedule(T, s))[0] == max(0, T - 1), (T, s)
        assert run_symbolically(Schedule(T, 1))[0] == T * (T - 1) // 2
    assert list(Schedule(1, 1)) == [("firsturn", 0, 1)]
    assert list(Schedule(1, "sqrt")) == [("firsturn", 0, 1)]


def test_sqrt_schedule():
    for T in list(range(1, 200)) + [10_000, 99_991]:
        sched = Schedule(T, "sqrt")
        L = sched.segment
        assert (L - 1) ** 2 < T <= L * L, (T, L)
        advanced, most = run_symbolically(sched)
        assert advanced == sched.forward_steps == (T - 1) // L * L  # up to the last segment's first state
        assert most == sched.snapshots == -(-T // L) - 1


def test_schedule_prints_its_actions():
    text = str(Schedule(7, 2))
    assert text.splitlines()[:6] == [
        "Schedule(T=7, revolve, s=2, r=3, forward_steps=11)",
        "  takeshot 0", "  advance 0->3", "  takeshot 3", "  advance 3->6", "  firsturn 6->7",
    ]
    assert text.splitlines()[-1] == "  youturn 0->1"
    assert str(Schedule(4, "sqrt")).splitlines() == [
        "Schedule(T=4, sqrt, L=2, forward_steps=2)",
        "  takeshot 0", "  advance 0->2", "  firsturn 2->4", "  restore 0", "  free 0", "  youturn 0->2",
    ]


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-3, ValueError), ("log", ValueError),
                                        (2.0, TypeError), (True, TypeError), (None, TypeError)])
def test_bad_snapshots(bad, error):
    m, X, Y, h0, _ = problem("RNN", 5)
    with pytest.raises(error, match="snapshots must be 'sqrt' or an integer >= 1"):
        loss_and_grad_checkpointed(m, X, Y, snapshots=bad)
    with pytest.raises(error, match="snapshots"):
        Schedule(5, bad)


# -------------------------------------------------------------------------------------------- checkpointed
SNAPSHOTS = st.sampled_from(["sqrt", 1, 2, 3, 5, "T-1", "T", "T+7"])


def budget(choice, T):
    if isinstance(choice, str) and choice.startswith("T"):
        return max(1, T + int(choice[1:] or 0))
    return choice


def summand_scale(model, case):
    """Each weight gradient entry's sum over the T*N rows of |that row's term| in (O5) and (B3), from full
    BPTT's own steps: the size of the rounding that summing the same terms in another order can make."""
    X, is_ids, Y, state0, mask = model._check_all(case.X, case.Y, case.h0, case.mask)
    T, N = X.shape[:2]
    cache = model._forward(X, is_ids, state0)
    _, dq, _ = model._loss_and_delta(model._logits(cache), Y, mask)
    h = cache["h"]
    dh_out = (dq.reshape(T * N, -1) @ model.params["V"]).reshape(T, N, -1)
    dG = np.empty((T, N, model.GATES * model.hidden_size))
    dstate = tuple(np.zeros_like(part) for part in state0)
    for s in range(T - 1, -1, -1):
        dstate = model._step_back(s, s + 1, (dstate[0] + dh_out[s],) + dstate[1:], cache, dG[s])
    dGh = np.abs(model._hidden_deltas(dG, cache)).reshape(T * N, -1)
    dG, dq = np.abs(dG).reshape(T * N, -1), np.abs(dq).reshape(T * N, -1)
    scale = {"V": dq.T @ np.abs(h[1:]).reshape(T * N, -1), "c": dq.sum(axis=0), "b": dG.sum(axis=0),
             "W": dGh.T @ np.abs(h[:-1]).reshape(T * N, -1), "bh": dGh.sum(axis=0)}
    if is_ids:
        UT = np.zeros((model.input_size, dG.shape[1]))
        np.add.at(UT, X.reshape(-1), dG)
        scale["U"] = UT.T
    else:
        scale["U"] = dG.T @ np.abs(X).reshape(T * N, -1)
    return scale


@settings(max_examples=examples(20))
@given(case=recurrent_cases(max_T=MAX_T, max_N=4, max_size=6, truncate=False), choice=SNAPSHOTS)
def test_checkpointed_equals_full_bptt(case, choice):
    """Every cell, both losses, token ids and floats, masks, h0: the full-BPTT gradient to rounding.

    1e-14 relative (``rel_error``) up to T = 60; beyond (the thorough profile), a sum of T*N terms with
    cancellation can differ by more than that relative to its own value, so there every weight gradient entry
    must be within 1e-14 of the sum of its terms' magnitudes (observed <= 4e-15 up to T = 200)."""
    m, T = case.model, np.shape(case.X)[0]
    s = budget(choice, T)
    out = loss_and_grad_checkpointed(m, case.X, case.Y, h0=case.h0, mask=case.mask, snapshots=s,
                                     return_state=True)
    what = f"snapshots={s!r} {case.describe()}: "
    if T <= 60:
        assert_same_gradient(m, case, out, TOL_REPLAY, what)
        return
    E, g, state = m.loss_and_grad(case.X, case.Y, h0=case.h0, mask=case.mask, return_state=True)
    assert_scalar_close(out[0], E, TOL_REPLAY, f"{what}loss")
    scale = summand_scale(m, case)
    for k in m.params:
        excess = np.abs(out[1][k] - g[k]) - TOL_REPLAY * scale[k]
        assert excess.max() <= 0, f"{what}{k} differs by more than 1e-14 of its terms' magnitudes"
    keys = [f"{part}0" for part in m.STATES]
    assert_grads_close(out[1], g, TOL_REPLAY, FLOOR_TORCH, what=what, keys=keys)
    for a, b in zip(flat(out[2]), flat(state)):
        assert_grads_close({"state": a}, {"state": b}, TOL_REPLAY, FLOOR_TORCH, what=f"{what}final ")


@settings(max_examples=examples(5))
@given(case=recurrent_cases(dtypes=(np.float32,), max_T=30, max_N=3, max_size=5, truncate=False),
       choice=SNAPSHOTS)
def test_checkpointed_float32(case, choice):
    """float32: the model's dtype throughout, and the float32 full BPTT's gradient to float32 rounding."""
    s = budget(choice, np.shape(case.X)[0])
    out = loss_and_grad_checkpointed(case.model, case.X, case.Y, h0=case.h0, mask=case.mask, snapshots=s,
                                     return_state=True)
    assert all(g.dtype == np.float32 for g in out[1].values())
    assert_same_gradient(case.model, case, out, allowance(np.float32).torch, f"float32 snapshots={s!r}: ")


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_checkpointed_against_torch(kind):
    """One long-ish case per cell against autograd itself (not only against our full BPTT)."""
    m, X, Y, h0, mask = problem(kind, 45, N=3, ids=True, mask=True)
    E, g = loss_and_grad_checkpointed(m, X, Y, h0=h0, mask=mask, snapshots=3)
    E_ref, g_ref = recurrent_loss_and_grad(m, X, Y, h0=h0, mask=mask)
    tol = allowance(np.float64).torch
    assert_scalar_close(E, E_ref, tol, f"{kind} loss")
    assert_grads_close(g, g_ref, tol, FLOOR_TORCH, what=f"{kind} revolve s=3 vs torch: ")


def rows_independent(shapes, N, T):
    """True when this BLAS gives each row of a product independently of how many rows it is given, for
    the products a turn makes ((rows, inner) @ (inner, out) with rows any multiple of N up to T*N)."""
    rng = np.random.default_rng(0)
    for inner, out in shapes:
        A, B = rng.standard_normal((T * N, inner)), rng.standard_normal((inner, out))
        full = A @ B
        if not all(np.array_equal(A[:r] @ B, full[:r]) for r in range(N, T * N, N)):
            return False
    return True


@pytest.mark.parametrize("kind, ids", [("RNN", False), ("LSTM", True), ("GRU", False)])
@pytest.mark.parametrize("snapshots", ["sqrt", 2, 5])
def test_checkpointed_replays_states_bit_for_bit(kind, ids, snapshots):
    """The recomputation replays full BPTT's per-row operations, so the states, the final state and dE/ds_0
    come out bit for bit when the BLAS computes each row of a product alone (OpenBLAS does for two rows and
    more; a one-row product may take another kernel). The weight gradients are sums over all T*N rows in one
    product against sums of segment products: they agree to rounding only (test above)."""
    T, N, D, H, K = 23, 3, 3, 4, 5
    m, X, Y, h0, mask = problem(kind, T, N=N, D=D, H=H, K=K, ids=ids, mask=True)
    GH = m.GATES * H
    if not rows_independent([(D, GH), (H, K), (K, H)], N, T):
        pytest.skip("this BLAS computes a product's rows differently for different row counts")
    E, g, s = m.loss_and_grad(X, Y, h0=h0, mask=mask, return_state=True)
    E2, g2, s2 = loss_and_grad_checkpointed(m, X, Y, h0=h0, mask=mask, snapshots=snapshots, return_state=True)
    for a, b in zip(flat(s2), flat(s)):
        np.testing.assert_array_equal(a, b)
    for part in m.STATES:
        np.testing.assert_array_equal(g2[f"{part}0"], g[f"{part}0"])


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("T", [1, 2, 3])
def test_checkpointed_short_sequences(kind, T):
    """T = 1, 2, 3 with every budget from 1 to beyond T, N = 1 and H = 1."""
    m, X, Y, h0, _ = problem(kind, T, N=1, D=2, H=1, K=2)
    E, g, s = m.loss_and_grad(X, Y, h0=h0, return_state=True)
    for snapshots in ["sqrt", 1, 2, 3, 4, 100]:
        E2, g2, s2 = loss_and_grad_checkpointed(m, X, Y, h0=h0, snapshots=snapshots, return_state=True)
        assert_scalar_close(E2, E, TOL_REPLAY, "loss")
        assert_grads_close(g2, g, TOL_REPLAY, FLOOR_TORCH, what=f"T={T} snapshots={snapshots}: ")
        if T == 1:  # one turn over the whole sequence: full BPTT's own operations, bit for bit
            assert E2 == E and all(np.array_equal(g2[k], g[k]) for k in g)


@pytest.mark.parametrize("kind, options", [("RNN", {"batch_first": True}), ("GRU", {"bias": False}),
                                           ("LSTM", {"bias": False, "batch_first": True}),
                                           ("LSTM", {"proj_size": 2})])
def test_model_options(kind, options):
    """batch_first (X, Y, mask sequence-major), bias=False; a projected LSTM (checkpointing only)."""
    T, N = 29, 3
    m = MODELS[kind](3, 4, 3, seed=2, **options)
    rng = np.random.default_rng(2)
    m.params = randomize_params(m.params, rng)
    X, Y, mask = rng.standard_normal((T, N, 3)), rng.integers(0, 3, (T, N)), rng.uniform(size=(T, N)) < 0.7
    if m.batch_first:
        X, Y, mask = np.swapaxes(X, 0, 1).copy(), Y.T.copy(), mask.T.copy()
    E, g, s = m.loss_and_grad(X, Y, mask=mask, return_state=True)
    runs = {}
    for k in ("sqrt", 2):
        out = loss_and_grad_checkpointed(m, X, Y, mask=mask, snapshots=k, return_state=True)
        runs[f"snapshots={k!r}"] = out, TOL_REPLAY
    if not m.proj_size:
        runs["rtrl"] = rtrl(m, X, Y, mask=mask, return_state=True), TOL_RTRL
    else:
        with pytest.raises(ValueError, match="proj_size"):
            rtrl(m, X, Y, mask=mask)
    for what, ((E2, g2, s2), tol) in runs.items():
        assert_scalar_close(E2, E, tol, f"{what} loss")
        assert_grads_close(g2, g, tol, FLOOR_TORCH, what=f"{kind} {options} {what}: ")
        for a, b in zip(flat(s2), flat(s)):
            assert_grads_close({"state": a}, {"state": b}, tol, FLOOR_TORCH, what=f"{what} final ")


def test_one_layer_with_a_head_only():
    X, Y = np.zeros((3, 2), dtype=int), np.zeros((3, 2), dtype=int)
    for fn in (loss_and_grad_checkpointed, rtrl):
        with pytest.raises(ValueError, match="one-layer, one-direction"):
            fn(RNN(3, 4, 3, num_layers=2), X, Y)
        with pytest.raises(ValueError, match="one-layer, one-direction"):
            fn(GRU(3, 4, 3, bidirectional=True), X, Y)
        with pytest.raises(TypeError, match="output layer"):
            fn(LSTM(3, 4), X, Y)


def test_checkpointed_all_masked_and_zero_h0():
    m, X, Y, _, _ = problem("LSTM", 9)
    mask = np.zeros((9, 2), dtype=bool)
    E, g = loss_and_grad_checkpointed(m, X, Y, mask=mask, snapshots=2)
    assert E == 0.0 and all(not v.any() for v in g.values())


def test_checkpointed_refuses_truncation_and_bad_data_as_loss_and_grad_does():
    m, X, Y, h0, _ = problem("GRU", 6)
    with pytest.raises(ValueError, match="truncate is not supported with snapshots"):
        loss_and_grad_checkpointed(m, X, Y, truncate=2)
    with pytest.raises(TypeError, match="RNN, LSTM or GRU"):
        loss_and_grad_checkpointed(object(), X, Y)
    with pytest.raises(TypeError, match="workspace"):
        loss_and_grad_checkpointed(m, X, Y, workspace={})


def bad_calls(T=VALIDATE_BLOCK + 100, N=2):
    """Bad inputs, one error each, several deep inside the sequence (in a later validation block)."""
    m, X, Y, h0, mask = problem("LSTM", T, N=N, ids=True, mask=True)
    late = T - 3
    X_bad = X.copy()
    X_bad[late, 1] = m.input_size  # a token id out of range at step late
    Y_bad = Y.copy()
    Y_bad[late, 0] = m.output_size
    mask_kept = mask.copy()
    mask_kept[late, 0] = True
    return m, [
        dict(X=X_bad, Y=Y, h0=h0, mask=mask),
        dict(X=X, Y=Y_bad, h0=h0, mask=mask_kept),
        dict(X=X, Y=Y[:-1], h0=h0, mask=mask),
        dict(X=X, Y=Y, h0=h0, mask=mask[:, :1]),
        dict(X=X, Y=Y, h0=h0, mask=mask.astype(int)),
        dict(X=X, Y=Y, h0=(h0[0], h0[1][:1]), mask=None),
        dict(X=X.astype(float), Y=Y, h0=h0, mask=None),
        dict(X=X[:0], Y=Y[:0], h0=h0, mask=None),
    ]


def test_bad_data_raises_what_loss_and_grad_raises():
    """The same exception and message as ``loss_and_grad``, indices counted in the whole sequence."""
    m, calls = bad_calls()
    for kw in calls:
        with pytest.raises((TypeError, ValueError)) as expected:
            m.loss_and_grad(**kw)
        for fn in (loss_and_grad_checkpointed, rtrl):
            with pytest.raises(expected.type) as got:
                fn(m, **kw)
            assert str(got.value) == str(expected.value), fn.__name__


# ------------------------------------------------------------------------------------------------ RTRL
@settings(max_examples=examples(20))
@given(case=recurrent_cases(max_T=MAX_T, max_N=4, max_size=5, truncate=False))
def test_rtrl_equals_bptt(case):
    """Forward in time, no history: BPTT's gradient (dE/ds_0 included) and final state to rounding."""
    out = rtrl(case.model, case.X, case.Y, h0=case.h0, mask=case.mask, return_state=True)
    assert_same_gradient(case.model, case, out, TOL_RTRL, f"rtrl {case.describe()}: ")


@settings(max_examples=examples(5))
@given(case=recurrent_cases(dtypes=(np.float32,), max_T=20, max_N=3, max_size=4, truncate=False))
def test_rtrl_float32(case):
    out = rtrl(case.model, case.X, case.Y, h0=case.h0, mask=case.mask, return_state=True)
    assert all(g.dtype == np.float32 for g in out[1].values())
    assert_same_gradient(case.model, case, out, allowance(np.float32).torch, "rtrl float32: ")


@settings(max_examples=examples(3))
@given(case=recurrent_cases(max_T=6, max_N=3, max_size=4, truncate=False, masks=False))
def test_rtrl_influence_is_torch_jacfwd_of_the_final_state(case):
    """M_T = d(h_T [, c_T]) / d(U, W, b [, bh], s_0) against torch.func.jacfwd on torch's own modules."""
    m = case.model
    *_, influence = rtrl(m, case.X, case.Y, h0=case.h0, return_influence=True)
    ref = final_state_jacobian(m, case.X, h0=case.h0)
    tol = allowance(np.float64).torch
    assert sorted(influence) == sorted(ref) == sorted(m.STATES)
    for part in ref:
        assert_grads_close(influence[part], ref[part], tol, FLOOR_TORCH, what=f"d{part}_T/d ")


def test_rtrl_against_torch_autograd():
    """One case per cell against torch's gradient, relu RNN included (f' = [z > 0], as torch)."""
    for kind, kw in [("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("GRU", {})]:
        m = MODELS[kind](3, 4, 3, loss="squared_error", seed=1, **kw)
        rng = np.random.default_rng(1)
        m.params = randomize_params(m.params, rng)
        X, Y = recurrent_inputs(m, 12, 2, rng, False), recurrent_targets(m, 12, 2, rng)
        h0 = random_state(m, 2, rng)
        E, g = rtrl(m, X, Y, h0=h0)
        E_ref, g_ref = recurrent_loss_and_grad(m, X, Y, h0=h0)
        tol = allowance(np.float64).torch
        assert_scalar_close(E, E_ref, tol, f"{kind} loss")
        assert_grads_close(g, g_ref, tol, FLOOR_TORCH, what=f"rtrl {kind} vs torch: ")


def test_rtrl_refuses_what_it_does_not_support():
    with pytest.raises(TypeError, match="RNN, LSTM or GRU"):
        rtrl("model", np.zeros((2, 1), dtype=int), np.zeros((2, 1), dtype=int))


# ------------------------------------------------------------------------------------------------ memory
def peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_T(monkeypatch):
    """tracemalloc's peak (arrays included) from T = 32 to T = 128: full BPTT's grows by its caches (which
    shows that the measure can fail); RTRL's and revolve's by less than a tenth of that (NumPy's cache of
    small buffers makes a few tens of kB of noise), sqrt's by its longer segment and extra snapshots. The
    module's block sizes are made small, so that both lengths span many blocks as long sequences do."""
    monkeypatch.setattr(long_bptt, "VALIDATE_BLOCK", 16)
    monkeypatch.setattr(long_bptt, "RTRL_BLOCK", 4)
    monkeypatch.setattr(long_bptt, "ADVANCE_BLOCK", 2)
    short, long_ = 32, 128
    m, X, Y, h0, _ = problem("GRU", long_, N=16, D=3, H=8, K=3, ids=True)
    growth = {}
    for name, fn in {
        "full": lambda T: m.loss_and_grad(X[:T], Y[:T], h0=h0),
        "rtrl": lambda T: rtrl(m, X[:T], Y[:T], h0=h0),
        "sqrt": lambda T: loss_and_grad_checkpointed(m, X[:T], Y[:T], h0=h0),
        "revolve": lambda T: loss_and_grad_checkpointed(m, X[:T], Y[:T], h0=h0, snapshots=6),
    }.items():
        fn(short)
        growth[name] = peak_bytes(lambda: fn(long_)) - peak_bytes(lambda: fn(short))  # noqa: B023
    assert growth["full"] > 1e6, growth  # 13 kB a step
    assert growth["rtrl"] < 0.1 * growth["full"] and growth["revolve"] < 0.1 * growth["full"], growth
    assert growth["sqrt"] < 0.25 * growth["full"], growth
