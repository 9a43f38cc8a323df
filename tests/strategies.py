"""Hypothesis strategies: the harness's problem generators, with hypothesis making every random decision.

``manual_bp.harness`` decides what a problem looks like (``mlp_problem``, ``recurrent_problem``); here a
:class:`DrawPick` answers its questions with ``draw``, so that pytest and ``manual-bp check`` draw from one
distribution and hypothesis can shrink a failure to its smallest form.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

from manual_bp import harness
from manual_bp.harness import Problem, off_kink
from manual_bp.models import RECURRENT_MODELS

RecurrentCase = Problem  # a recurrent problem: model, X, Y, h0, mask, truncate


class DrawPick:
    """The harness's ``pick`` protocol answered by hypothesis (labelled draws)."""

    def __init__(self, draw):
        self.draw = draw

    def int(self, lo, hi, label=None) -> int:
        return self.draw(st.integers(lo, hi), label=label)

    def choice(self, options, label=None, sweep=False):
        return self.draw(st.sampled_from(list(options)), label=label)

    def bool(self, label=None) -> bool:
        return self.draw(st.booleans(), label=label)

    def seed(self, label=None) -> int:
        return self.draw(st.integers(0, 2**32 - 1), label=label)


@st.composite
def mlp_cases(draw, dtypes=(np.float64,), max_layers=5, max_width=16, max_batch=16):
    """Draw ``(net, X, Y)``: a random MLP with random non-zero parameters and a matching batch."""
    p = harness.mlp_problem(DrawPick(draw), dtypes=dtypes, max_layers=max_layers, max_width=max_width,
                            max_batch=max_batch)
    return p.model, p.X, p.Y


def ci_examples(n: int) -> int:
    """``@settings(max_examples=ci_examples(n))``: ``n`` examples in the ``ci`` profile, the profile's own
    count in ``dev`` and ``thorough``. For a property whose every example is expensive (a torch oracle) and
    whose distribution another property draws too: ``ci`` makes the same assertion fewer times over."""
    count = settings().max_examples
    return min(n, count) if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else count


def _longest() -> int:
    """The default longest sequence: 20 steps in the ``ci`` profile (the suite's minute), 40 in ``dev`` and
    ``thorough``, which draw more and longer."""
    return 20 if settings().max_examples <= 50 else 40


@st.composite
def recurrent_cases(draw, models=tuple(RECURRENT_MODELS), dtypes=(np.float64,), max_T=None, max_N=8,
                    max_size=10, truncate=True, masks=True, losses=("cross_entropy", "squared_error")):
    """Draw a recurrent :class:`~manual_bp.harness.Problem` (``max_T`` None: see ``_longest``)."""
    return harness.recurrent_problem(DrawPick(draw), models=models, dtypes=dtypes,
                                     max_T=_longest() if max_T is None else max_T, max_N=max_N,
                                     max_size=max_size, truncate=truncate, masks=masks, losses=losses)


def relu_safe(net, X):
    """True when no relu pre-activation lies within the harness's margin of the kink."""
    return off_kink(Problem(net, X, None))


def relu_safe_recurrent(case):
    return off_kink(case)


def random_state(model, N, rng, scale=0.5):
    """A non-zero initial state in the form ``h0`` accepts (a tuple (h0, c0) for the LSTM)."""
    H = model.hidden_size
    return model.public_state(tuple((rng.standard_normal((N, H)) * scale).astype(model.dtype)
                                    for _ in model.STATES))


def recurrent_inputs(model, T, N, rng, ids):
    """``X``: token ids (T, N) in [0, D) or floats (T, N, D) in the model's dtype."""
    if ids:
        return rng.integers(0, model.input_size, (T, N))
    return rng.standard_normal((T, N, model.input_size)).astype(model.dtype)


def recurrent_targets(model, T, N, rng):
    if model.loss_name == "cross_entropy":
        return rng.integers(0, model.output_size, (T, N))
    return rng.standard_normal((T, N, model.output_size)).astype(model.dtype)
