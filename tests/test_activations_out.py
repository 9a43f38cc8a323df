"""Activations written into strided ``out=`` views (gate blocks of a stacked buffer) equal fresh results.

Found by the property tests: NumPy 2.4.6's float32 ``np.negative(x, out=view)`` reads the wrong element for a
(2, 1) column view of a (2, 4) array, which made a float32 LSTM with H = 1 compute a wrong output gate.
"""

import numpy as np
import pytest

from manual_bp.activations import ACTIVATIONS

VIEWS = [((2, 4), np.s_[:, 3:]), ((3, 8), np.s_[:, 2:4]), ((5, 3), np.s_[:, 1:2]), ((4, 6), np.s_[:, ::2]),
         ((7, 16), np.s_[:, 5:13]), ((2, 3), np.s_[:, 2:])]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, view", VIEWS)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_into_a_strided_view_equals_a_fresh_result(name, shape, view, dtype):
    f, fprime = ACTIVATIONS[name]
    z = np.random.default_rng(0).standard_normal(shape).astype(dtype) * 3
    fresh = f(z[view].copy())
    buf = z.copy()
    out = f(buf[view], out=buf[view])  # in place, as the LSTM and GRU steps do
    np.testing.assert_array_equal(out, fresh)
    np.testing.assert_array_equal(buf[view], fresh)
    other = np.zeros_like(z)
    f(z[view], out=other[view])
    np.testing.assert_array_equal(other[view], fresh)
    d = np.zeros_like(z)
    fprime(z[view], fresh, out=d[view])
    np.testing.assert_array_equal(d[view], fprime(z[view].copy(), fresh.copy()))


def test_float32_lstm_with_one_hidden_unit_equals_float64():
    """The case hypothesis found: T=1, N=2, D=H=K=1, squared error, non-zero initial state."""
    from manual_bp import LSTM

    X = np.array([[[-1.245911], [-0.7322674]]], dtype=np.float32)
    Y = np.array([[[-0.544259], [-0.31630015]]], dtype=np.float32)
    h0 = (np.array([[0.2058], [0.5213]], dtype=np.float32), np.array([[-0.0643], [0.6832]], dtype=np.float32))
    m32 = LSTM(1, 1, 1, loss="squared_error", dtype=np.float32, seed=2)
    m64 = LSTM(1, 1, 1, loss="squared_error", dtype=np.float64, seed=2)
    rng = np.random.default_rng(2)
    m32.params = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in m32.params.items()}
    m64.params = {k: v.astype(np.float64) for k, v in m32.params.items()}
    E32, E64 = m32.loss(X, Y, h0=h0), m64.loss(X, Y, h0=h0)
    assert abs(E32 - E64) <= 1e-6 * abs(E64), (E32, E64)
