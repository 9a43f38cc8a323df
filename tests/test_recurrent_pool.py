"""The recurrent models' buffer pool (loss_and_grad reuses its large arrays): invisible in the results."""

import copy
import gc
import threading

import numpy as np
import pytest

from manual_bp import GRU, LSTM, RNN


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_pool_changes_no_result_and_returns_nothing_it_reuses(cls):
    rng = np.random.default_rng(0)
    m = cls(3, 5, 4, seed=0)
    X, Y = rng.standard_normal((6, 2, 3)), rng.integers(0, 4, (6, 2))
    E1, g1, s1 = m.loss_and_grad(X, Y, return_state=True)
    snapshot = {k: v.copy() for k, v in g1.items()}
    X2, Y2 = rng.standard_normal((6, 2, 3)), rng.integers(0, 4, (6, 2))
    m.loss_and_grad(X2, Y2)  # reuses the pooled arrays: what the first call returned must not change
    assert all(np.array_equal(g1[k], snapshot[k]) for k in g1)
    E3, g3, s3 = cls(3, 5, 4, seed=0).loss_and_grad(X, Y, return_state=True)  # a fresh model, no pool yet
    assert E1 == E3 and all(np.array_equal(g1[k], g3[k]) for k in g1)


def test_pool_is_per_thread_and_freed_with_the_thread():
    rng = np.random.default_rng(1)
    m = LSTM(3, 4, 3, seed=0)
    X, Y = rng.integers(0, 3, (5, 2)), rng.integers(0, 3, (5, 2))
    E, g = m.loss_and_grad(X, Y)
    out = {}
    t = threading.Thread(target=lambda: out.update(r=m.loss_and_grad(X, Y)))
    t.start()
    t.join()
    assert out["r"][0] == E and all(np.array_equal(out["r"][1][k], g[k]) for k in g)
    del t
    gc.collect()
    assert len(m._buffer_pools) == 1  # only this thread's
    E2, g2 = copy.deepcopy(m).loss_and_grad(X, Y)
    assert E2 == E
