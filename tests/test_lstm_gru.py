"""LSTM/GRU specifics and the deliberate-bug self-test: the comparisons the property tests make can fail.

The best-known NumPy LSTM had a bias bug its torch tests missed, because every bias started at zero and one
bias was copied into both of torch's. Here each classic bug is planted in a copy of the parameters (or in a
subclass's cell), and the same comparison the property tests use (``assert_grads_close`` against the torch
oracle holding the true parameters) must raise.
"""

import numpy as np
import pytest
from manual_bp.reference import recurrent_loss_and_grad

from manual_bp import GRU, LSTM, RNN
from manual_bp.activations import sigmoid
from manual_bp.harness import randomize_params
from tests.helpers import FLOOR_TORCH, assert_grads_close, assert_scalar_close
from tests.strategies import (
    random_state,
    recurrent_inputs,
    recurrent_targets,
)

MODELS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}


def problem(kind, seed, T=6, N=3, D=3, H=4, K=3, ids=False, cls=None):
    m = (cls or MODELS[kind])(D, H, K, seed=seed)
    rng = np.random.default_rng(seed)
    m.params = randomize_params(m.params, rng)
    return m, recurrent_inputs(m, T, N, rng, ids), recurrent_targets(m, T, N, rng), random_state(m, N, rng)


def swap_blocks(p, a, b, H):
    """Swap gate blocks a and b of U, W, b (and bh): a gate-order bug."""
    out = dict(p)
    for k in ("U", "W", "b", "bh"):
        if k in p:
            v = p[k].copy()
            blk_a, blk_b = slice(a * H, (a + 1) * H), slice(b * H, (b + 1) * H)
            v[blk_a], v[blk_b] = p[k][blk_b], p[k][blk_a]
            out[k] = v
    return out


BUGS = {
    "LSTM": {
        "i and f blocks swapped": lambda p, H: swap_blocks(p, 0, 1, H),
        "g and o blocks swapped": lambda p, H: swap_blocks(p, 2, 3, H),
        "bias b dropped": lambda p, H: {**p, "b": np.zeros_like(p["b"])},
        "forget-gate bias dropped": lambda p, H: {**p, "b": np.concatenate([p["b"][:H], 0 * p["b"][H:2 * H],
                                                                             p["b"][2 * H:]])},
    },
    "GRU": {
        "r and z blocks swapped": lambda p, H: swap_blocks(p, 0, 1, H),
        "z and n blocks swapped": lambda p, H: swap_blocks(p, 1, 2, H),
        "bias bh dropped": lambda p, H: {**p, "bh": np.zeros_like(p["bh"])},
        "b copied into bh (numpy-ml's bug)": lambda p, H: {**p, "bh": p["b"].copy()},
        "bh folded into b (r no longer scales bh_n)": lambda p, H: {**p, "b": p["b"] + p["bh"],
                                                                    "bh": np.zeros_like(p["bh"])},
    },
    "RNN": {
        "bias b dropped": lambda p, H: {**p, "b": np.zeros_like(p["b"])},
    },
}


def _bug_cases():
    for kind, bugs in BUGS.items():
        for name in bugs:
            yield pytest.param(kind, name, id=f"{kind}: {name}")


@pytest.mark.parametrize("kind, bug", list(_bug_cases()))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_parameter_bug_fails_the_torch_comparison(kind, bug, seed):
    m, X, Y, h0 = problem(kind, seed)
    E_t, g_t = recurrent_loss_and_grad(m, X, Y, h0=h0)  # the oracle holds the true parameters
    E, g = m.loss_and_grad(X, Y, h0=h0)
    assert_grads_close(g, g_t, 1e-10, FLOOR_TORCH, what="correct parameters: ")  # the comparison passes...
    m.params = BUGS[kind][bug](m.params, m.hidden_size)
    E_bug, g_bug = m.loss_and_grad(X, Y, h0=h0)
    with pytest.raises(AssertionError, match="gradients differ from the reference"):  # ...and catches the bug
        assert_grads_close(g_bug, g_t, 1e-10, FLOOR_TORCH, what=f"{kind} with {bug}: ")
    with pytest.raises(AssertionError):
        assert_scalar_close(E_bug, E_t, 1e-10, "loss")


def test_a_dropped_bias_hides_when_biases_start_at_zero():
    """Why the strategies never use zero biases: dropping one then changes nothing, and nothing can see it."""
    m, X, Y, h0 = problem("GRU", 0)
    m.params = {**m.params, "bh": np.zeros_like(m.params["bh"])}
    _, g_t = recurrent_loss_and_grad(m, X, Y, h0=h0)
    m.params = BUGS["GRU"]["bias bh dropped"](m.params, m.hidden_size)
    _, g = m.loss_and_grad(X, Y, h0=h0)
    assert_grads_close(g, g_t, 1e-10, FLOOR_TORCH)  # passes: the bug is invisible at zero biases


class LSTMWithoutCellPath(LSTM):
    """A planted backward bug: the cell-state path dE/dc_{t-1} = dE/dc_t ⊙ f is dropped (L8)."""

    def _step_back(self, start, stop, dstate, cache, dG):
        dh_prev, dc_prev = super()._step_back(start, stop, dstate, cache, dG)
        return dh_prev, np.zeros_like(dc_prev)


class GRUResetAfterBias(GRU):
    """A planted forward bug: the other GRU convention, n = tanh(U_n x + b_n + r ⊙ (W_n h) + bh_n)."""

    def _step(self, s, cache, work):
        H = self.hidden_size
        bh = self.params["bh"]
        self.params = {**self.params, "bh": np.concatenate([bh[: 2 * H], 0 * bh[2 * H :]])}
        try:
            cache["gates"][s][:, 2 * H :] += bh[2 * H :]  # bh_n outside the reset gate
            super()._step(s, cache, work)
        finally:
            self.params = {**self.params, "bh": bh}


@pytest.mark.parametrize("cls, kind", [(LSTMWithoutCellPath, "LSTM"), (GRUResetAfterBias, "GRU")])
@pytest.mark.parametrize("seed", [0, 1])
def test_planted_cell_bug_fails_the_torch_comparison(cls, kind, seed):
    m, X, Y, h0 = problem(kind, seed, cls=cls)
    _, g_t = recurrent_loss_and_grad(m, X, Y, h0=h0)
    _, g = m.loss_and_grad(X, Y, h0=h0)
    with pytest.raises(AssertionError, match="gradients differ from the reference"):
        assert_grads_close(g, g_t, 1e-10, FLOOR_TORCH, what=f"{cls.__name__}: ")


def test_lstm_gates_are_torch_order():
    """One step by hand from torch's equations: [i f g o] blocks, c = f c0 + i g, h = o tanh(c)."""
    m, X, Y, (h0, c0) = problem("LSTM", 4, T=1, N=2)
    H = m.hidden_size
    a = X[0] @ m.params["U"].T + h0 @ m.params["W"].T + m.params["b"]
    i, f, g, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
    c = f * c0 + i * g
    _, (S, C) = m.forward(X, h0=(h0, c0))
    np.testing.assert_allclose(C[1], c, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(S[1], o * np.tanh(c), rtol=1e-14, atol=1e-15)


def test_gru_reset_gate_multiplies_the_hidden_bias():
    """One step by hand from torch's equations: n = tanh(U_n x + b_n + r ⊙ (W_n h + bh_n))."""
    m, X, Y, h0 = problem("GRU", 4, T=1, N=2)
    H, p = m.hidden_size, m.params
    gx, gh = X[0] @ p["U"].T + p["b"], h0 @ p["W"].T + p["bh"]
    r, z = sigmoid(gx[:, :H] + gh[:, :H]), sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
    n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
    _, S = m.forward(X, h0=h0)
    np.testing.assert_allclose(S[1], (1 - z) * n + z * h0, rtol=1e-14, atol=1e-15)


def test_lstm_initial_state_parts_may_be_none():
    m, X, Y, (h0, c0) = problem("LSTM", 3)
    zeros = np.zeros_like(h0)
    E1, g1 = m.loss_and_grad(X, Y, h0=(None, c0))
    E2, g2 = m.loss_and_grad(X, Y, h0=(zeros, c0))
    assert E1 == E2 and all(np.array_equal(g1[k], g2[k]) for k in g1)
    E3, _ = m.loss_and_grad(X, Y, h0=None)
    E4, _ = m.loss_and_grad(X, Y, h0=(zeros, zeros))
    assert E3 == E4
    _, g_t = recurrent_loss_and_grad(m, X, Y, h0=(None, c0))
    assert_grads_close(g1, g_t, 1e-10, FLOOR_TORCH)
