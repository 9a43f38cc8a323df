"""manual_bp.optim against torch.optim: the same start and the same gradients give the same trajectory.

The oracle is torch's own optimizers, schedules and clipping (``torch.optim.SGD/Adam/AdamW``,
``torch.optim.lr_scheduler.StepLR/ExponentialLR``, ``torch.nn.utils.clip_grad_norm_/clip_grad_value_``) in
float64, fed gradient by gradient; every parameter and every optimizer buffer is compared after every step.
"""

from __future__ import annotations

import math
import re
import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from manual_bp import optim
from manual_bp.gradcheck import compare_grads

# Both sides run the same float64 arithmetic in a slightly different order (torch's lerp for m, addcdiv,
# its own vector norms), so a step agrees to a few ulps; K <= 8 steps compound that to ~1e-15 relative.
TOL_OPTIM = 1e-12
FLOOR_OPTIM = 1e-12  # keeps 0/0 out only
# float32 parameters against torch in float64: float32's epsilon (1.2e-7) times growth over K steps
TOL_OPTIM_F32 = 1e-4

SHAPES = {"W1": (3, 4), "b1": (3,), "W2": (2, 3), "b2": (2,)}


def make_params(rng, dtype=np.float64):
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


def make_grads(rng, K, scale):
    """K steps of gradients with non-zero entries of varying size (``scale`` sets whether clipping bites)."""
    return [
        {k: rng.standard_normal(s) * scale * rng.uniform(0.2, 2.0) for k, s in SHAPES.items()}
        for _ in range(K)
    ]


def assert_close(ours: dict, ref: dict, tol, what, floor=FLOOR_OPTIM):
    for k in ref:
        if np.shape(ours[k]) != np.shape(ref[k]):
            raise AssertionError(f"{what}{k}: shape {np.shape(ours[k])} != reference {np.shape(ref[k])}")
    result = compare_grads(ours, ref, tol=tol, floor=floor)
    if not result.ok:
        lines = "\n".join(f"  {r}" for r in result.failures())
        raise AssertionError(f"{what}differs from torch:\n{lines}")
    return result.max_error


TORCH_BUFFERS = {"momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}


def run_both(kind, hyper, params0, grads_seq, clip=None, schedule=None, dtype=np.float64):
    """Step ours and torch's optimizer side by side; return the worst relative error seen."""
    params = {k: v.astype(dtype) for k, v in params0.items()}
    ours = getattr(optim, kind)(params, **hyper, **(clip or {}))
    tparams = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params0.items()}
    tkw = dict(hyper)
    if "betas" in tkw:
        tkw["betas"] = tuple(tkw["betas"])
    topt = getattr(torch.optim, kind)(list(tparams.values()), foreach=False, **tkw)
    sched = tsched = None
    if schedule is not None:
        name, skw = schedule
        sched = getattr(optim, name)(ours, **skw)
        tsched = getattr(torch.optim.lr_scheduler, name)(topt, **skw)
    tol = TOL_OPTIM if dtype == np.float64 else TOL_OPTIM_F32
    worst = 0.0
    for t, g in enumerate(grads_seq, start=1):
        ours.step(g)
        for k, p in tparams.items():
            p.grad = torch.tensor(g[k], dtype=torch.float64)
        if clip and "clip_norm" in clip:
            torch.nn.utils.clip_grad_norm_(
                list(tparams.values()), clip["clip_norm"], clip.get("norm_type", 2.0), foreach=False
            )
        if clip and "clip_value" in clip:
            torch.nn.utils.clip_grad_value_(list(tparams.values()), clip["clip_value"], foreach=False)
        topt.step()
        ref = {k: p.detach().numpy() for k, p in tparams.items()}
        for k in params:
            if params[k].dtype != dtype:
                raise AssertionError(f"step {t}: params[{k!r}] became {params[k].dtype}, expected {dtype}")
        worst = max(worst, assert_close(params, ref, tol, f"{kind}{hyper} step {t}: params "))
        for b in TORCH_BUFFERS:
            tb = {k: topt.state[p][b].numpy() for k, p in tparams.items() if b in topt.state[p]}
            if tb:
                if b not in ours.state:
                    raise AssertionError(f"step {t}: torch has buffer {b!r}, ours has {sorted(ours.state)}")
                # A buffer is a sum of gradient terms; where they cancel exactly (clipped values +-c with
                # momentum 0.9 and dampening 0.1) both sides keep a rounding residue ~1e-18, so its error is
                # judged against the size of the terms it sums, not against the residue.
                scale = max(float(np.abs(gs[k]).max()) for gs in grads_seq[:t] for k in gs)
                if clip and "clip_value" in clip:
                    scale = min(scale, clip["clip_value"])
                floor = max(FLOOR_OPTIM, scale * scale if b.endswith("exp_avg_sq") else scale)
                worst = max(worst, assert_close(ours.state[b], tb, tol, f"{kind} step {t}: {b} ", floor))
        if sched is not None:
            sched.step()
            tsched.step()
            (tlr,) = tsched.get_last_lr()
            if not math.isclose(ours.lr, tlr, rel_tol=1e-14, abs_tol=0.0):
                raise AssertionError(f"epoch {t}: lr {ours.lr!r} != torch {tlr!r}")
    return worst


# ---------------------------------------------------------------------------------------------- strategies
@st.composite
def sgd_hyper(draw):
    lr = draw(st.floats(1e-3, 1.0), label="lr")
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9]) | st.floats(0.0, 0.99), label="momentum")
    nesterov = momentum > 0 and draw(st.booleans(), label="nesterov")
    dampening = (
        0.0 if nesterov else draw(st.sampled_from([0.0, 0.1]) | st.floats(0.0, 1.0), label="dampening")
    )
    weight_decay = draw(st.sampled_from([0.0, 1e-2]) | st.floats(0.0, 0.5), label="weight_decay")
    return dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)


@st.composite
def adam_hyper(draw):
    lr = draw(st.floats(1e-4, 0.5), label="lr")
    beta1 = draw(st.sampled_from([0.0, 0.9]) | st.floats(0.0, 0.99), label="beta1")
    beta2 = draw(st.sampled_from([0.999, 0.5]) | st.floats(0.0, 0.9999), label="beta2")
    eps = draw(st.sampled_from([1e-8, 1e-3]) | st.floats(1e-10, 1e-2), label="eps")
    weight_decay = draw(st.sampled_from([0.0, 1e-2]) | st.floats(0.0, 0.5), label="weight_decay")
    amsgrad = draw(st.booleans(), label="amsgrad")
    return dict(lr=lr, betas=[beta1, beta2], eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


@st.composite
def clip_options(draw):
    which = draw(st.sampled_from(["none", "norm", "value", "both"]), label="clipping")
    out = {}
    if which in ("norm", "both"):
        out["clip_norm"] = draw(st.floats(0.05, 5.0), label="max_norm")
        out["norm_type"] = draw(st.sampled_from([2.0, 1.0, 3.0, math.inf]), label="norm_type")
    if which in ("value", "both"):
        out["clip_value"] = draw(st.floats(0.01, 2.0), label="clip_value")
    return out


case = dict(K=st.integers(1, 8), seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e-2, 1.0, 10.0]))


# ---------------------------------------------------------------------------------------------- trajectories
@given(hyper=sgd_hyper(), clip=clip_options(), **case)
@example(
    hyper=dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
    clip={},
    K=3,
    seed=0,
    scale=1.0,
)  # the seed's plain SGD
@example(
    hyper=dict(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1, nesterov=False),
    clip={},
    K=5,
    seed=1,
    scale=1.0,
)  # dampening skips the first step (b_1 = g)
@example(
    hyper=dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=True),
    clip={},
    K=5,
    seed=2,
    scale=1.0,
)
@example(
    hyper=dict(lr=1.0, momentum=0.9, dampening=0.1, weight_decay=0.0, nesterov=False),
    clip={"clip_value": 0.09375},
    K=2,
    seed=294,
    scale=1.0,
)  # clipped +-c terms cancel exactly in the momentum buffer: a rounding residue on both sides
def test_sgd_equals_torch(hyper, clip, K, seed, scale):
    rng = np.random.default_rng(seed)
    run_both("SGD", hyper, make_params(rng), make_grads(rng, K, scale), clip=clip)


@given(hyper=adam_hyper(), clip=clip_options(), decoupled=st.booleans(), **case)
@example(
    hyper=dict(lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0, amsgrad=False),
    clip={},
    decoupled=False,
    K=8,
    seed=0,
    scale=1.0,
)
@example(
    hyper=dict(lr=1e-2, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.1, amsgrad=True),
    clip={},
    decoupled=False,
    K=8,
    seed=3,
    scale=1.0,
)
@example(
    hyper=dict(lr=1e-2, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.1, amsgrad=False),
    clip={},
    decoupled=True,
    K=8,
    seed=4,
    scale=1.0,
)
def test_adam_equals_torch(hyper, clip, decoupled, K, seed, scale):
    rng = np.random.default_rng(seed)
    run_both("AdamW" if decoupled else "Adam", hyper, make_params(rng), make_grads(rng, K, scale), clip=clip)


@given(
    schedule=st.one_of(
        st.builds(
            lambda s, g: ("StepLR", dict(step_size=s, gamma=g)), st.integers(1, 4), st.floats(0.05, 1.0)
        ),
        st.builds(lambda g: ("ExponentialLR", dict(gamma=g)), st.floats(0.5, 1.0)),
    ),
    kind=st.sampled_from(["SGD", "Adam"]),
    seed=st.integers(0, 2**32 - 1),
)
@example(schedule=("StepLR", dict(step_size=2, gamma=0.1)), kind="SGD", seed=0)
def test_schedules_equal_torch(schedule, kind, seed):
    """One optimizer step per epoch, then ``scheduler.step()``: the lr sequence and the trajectory match."""
    rng = np.random.default_rng(seed)
    hyper = dict(lr=0.1, momentum=0.9) if kind == "SGD" else dict(lr=0.05)
    run_both(kind, hyper, make_params(rng), make_grads(rng, 8, 1.0), schedule=schedule)


@pytest.mark.parametrize(
    "kind, hyper",
    [
        ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)),
        ("Adam", dict(lr=1e-2, weight_decay=1e-2, amsgrad=True)),
    ],
)
def test_float32_params_stay_float32_and_track_torch(kind, hyper):
    rng = np.random.default_rng(7)
    run_both(
        kind, hyper, make_params(rng), make_grads(rng, 8, 1.0), dtype=np.float32, clip=dict(clip_norm=1.0)
    )


# ---------------------------------------------------------------------------------------------- clipping
@given(
    norm_type=st.sampled_from([2.0, 1.0, 3.0, 0.5, math.inf]),
    max_norm=st.floats(1e-3, 10.0),
    scale=st.sampled_from([1e-3, 1.0, 10.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_clip_grad_norm_equals_torch(norm_type, max_norm, scale, seed):
    rng = np.random.default_rng(seed)
    grads = make_grads(rng, 1, scale)[0]
    tg = [torch.tensor(g) for g in grads.values()]
    for t in tg:
        t.grad = t.clone()
    ref_norm = float(torch.nn.utils.clip_grad_norm_(tg, max_norm, norm_type, foreach=False))
    total = optim.clip_grad_norm(grads, max_norm, norm_type)
    if not math.isclose(total, ref_norm, rel_tol=TOL_OPTIM):
        raise AssertionError(f"total norm {total!r} != torch {ref_norm!r} (norm_type={norm_type})")
    assert_close(grads, {k: t.grad.numpy() for k, t in zip(grads, tg)}, TOL_OPTIM, "clip_grad_norm: ")


@given(clip_value=st.floats(1e-3, 3.0), seed=st.integers(0, 2**32 - 1))
def test_clip_grad_value_equals_torch(clip_value, seed):
    rng = np.random.default_rng(seed)
    grads = make_grads(rng, 1, 1.0)[0]
    tg = [torch.tensor(g) for g in grads.values()]
    for t in tg:
        t.grad = t.clone()
    torch.nn.utils.clip_grad_value_(tg, clip_value, foreach=False)
    optim.clip_grad_value(grads, clip_value)
    for k, t in zip(grads, tg):
        if not np.array_equal(grads[k], t.grad.numpy()):
            raise AssertionError(f"clip_grad_value: {k} differs from torch")


def test_clip_grad_norm_keys_and_nonfinite():
    rng = np.random.default_rng(0)
    grads = make_grads(rng, 1, 10.0)[0]
    grads["h0"] = np.full((2, 3), 100.0)
    before = {k: v.copy() for k, v in grads.items()}
    optim.clip_grad_norm(grads, 1.0, keys=list(SHAPES))
    assert np.array_equal(grads["h0"], before["h0"])  # not in keys: untouched
    assert optim.grad_norm(grads, keys=list(SHAPES)) <= 1.0 + 1e-9
    grads["W1"][0, 0] = np.nan
    snapshot = {k: v.copy() for k, v in grads.items()}
    with pytest.raises(ValueError, match=re.escape("grads['W1'][(0, 0)] = nan")):
        optim.clip_grad_norm(grads, 1.0)
    assert all(np.array_equal(grads[k], snapshot[k], equal_nan=True) for k in grads)


def test_step_clips_a_copy_and_ignores_extra_keys():
    """Clipping inside ``step`` never alters the caller's gradients; keys like "h0"/"X" are ignored."""
    rng = np.random.default_rng(1)
    params = make_params(rng)
    g = make_grads(rng, 1, 10.0)[0]
    g["h0"] = rng.standard_normal((2, 3))
    g["X"] = rng.standard_normal((5, 4))
    before = {k: v.copy() for k, v in g.items()}
    p0 = {k: v.copy() for k, v in params.items()}
    opt = optim.SGD(params, lr=1.0, clip_norm=0.5)
    opt.step(g)
    assert all(np.array_equal(g[k], before[k]) for k in g)
    step = {k: p0[k] - params[k] for k in params}
    assert abs(optim.grad_norm(step) - 0.5) < 1e-6


# ---------------------------------------------------------------------------------------------- state
@pytest.mark.parametrize(
    "kind, hyper",
    [
        ("SGD", dict(lr=0.1)),
        ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-3)),
        ("Adam", dict(lr=1e-2, amsgrad=True, clip_norm=1.0)),
        ("AdamW", dict(lr=1e-2)),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_state_dict_round_trip_continues_exactly(kind, hyper, dtype):
    rng = np.random.default_rng(2)
    params = make_params(rng, dtype)
    grads = make_grads(rng, 6, 1.0)
    opt = getattr(optim, kind)(params, **hyper)
    fresh_sd = opt.state_dict()
    optim_copy = getattr(optim, kind)({k: v.copy() for k, v in params.items()}, lr=0.5)
    optim_copy.load_state_dict(fresh_sd)  # a state before any step loads too
    for g in grads[:3]:
        opt.step(g)
    sd = opt.state_dict()
    for bufs in sd["state"].values():
        for arr in bufs.values():
            assert isinstance(arr, np.ndarray) and arr.dtype == dtype
    params2 = {k: v.copy() for k, v in params.items()}
    opt2 = getattr(optim, kind)(params2, lr=123.0)  # hyper-parameters come from the state dict
    opt2.load_state_dict(sd)
    assert opt2.config() == opt.config() and opt2.step_count == 3
    for g in grads[3:]:
        opt.step(g)
        opt2.step(g)
    for k in params:
        assert np.array_equal(params[k], params2[k]), k


def test_load_state_dict_rejects_mismatch_and_changes_nothing():
    rng = np.random.default_rng(3)
    params = make_params(rng)
    opt = optim.Adam(params, lr=1e-2)
    opt.step(make_grads(rng, 1, 1.0)[0])
    sd = opt.state_dict()
    other = optim.Adam({k: v.copy() for k, v in params.items()}, lr=0.5)
    before = other.state_dict()
    bad = opt.state_dict()
    bad["state"]["exp_avg"]["W1"] = np.zeros((4, 3))
    with pytest.raises(ValueError, match=re.escape("must have shape (3, 4) and dtype float64")):
        other.load_state_dict(bad)
    bad = opt.state_dict()
    bad["state"]["exp_avg"]["W1"] = bad["state"]["exp_avg"]["W1"].astype(np.float32)
    with pytest.raises(ValueError, match="dtype float64"):
        other.load_state_dict(bad)
    bad = opt.state_dict()
    del bad["state"]["exp_avg_sq"]
    with pytest.raises(ValueError, match="must hold buffers"):
        other.load_state_dict(bad)
    bad = opt.state_dict()
    bad["config"]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr must be >= 0.0; got -1.0"):
        other.load_state_dict(bad)
    with pytest.raises(ValueError, match="must have keys"):
        other.load_state_dict(optim.SGD(params, lr=0.1).state_dict())
    after = other.state_dict()
    assert after["config"] == before["config"] and after["step_count"] == 0
    other.load_state_dict(sd)
    assert other.step_count == 1


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make, exc, message",
    [
        (lambda p: optim.SGD(p, lr=-0.1), ValueError, "lr must be >= 0.0; got -0.1"),
        (lambda p: optim.SGD(p, lr=float("nan")), ValueError, "lr must be finite; got nan"),
        (lambda p: optim.SGD(p, lr="0.1"), TypeError, "lr must be a real number; got str '0.1'"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), ValueError, "momentum must be >= 0.0; got -0.5"),
        (lambda p: optim.SGD(p, lr=0.1, dampening=1.5), ValueError, "dampening must be <= 1.0; got 1.5"),
        (
            lambda p: optim.SGD(p, lr=0.1, weight_decay=-1),
            ValueError,
            "weight_decay must be >= 0.0; got -1.0",
        ),
        (lambda p: optim.SGD(p, lr=0.1, nesterov=True), ValueError, "nesterov=True needs momentum > 0"),
        (
            lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
            ValueError,
            "dampening == 0; got momentum=0.9, dampening=0.1",
        ),
        (lambda p: optim.SGD(p, lr=0.1, nesterov=1), TypeError, "nesterov must be True or False; got int 1"),
        (lambda p: optim.SGD(p, lr=0.1, clip_norm=0), ValueError, "clip_norm must be > 0.0; got 0.0"),
        (lambda p: optim.SGD(p, lr=0.1, clip_value=-1), ValueError, "clip_value must be > 0.0; got -1.0"),
        (lambda p: optim.SGD(p, lr=0.1, norm_type=0), ValueError, "norm_type must be > 0"),
        (lambda p: optim.Adam(p, betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be < 1.0; got 1.0"),
        (lambda p: optim.Adam(p, betas=(-0.1, 0.9)), ValueError, r"betas\[0\] must be >= 0.0; got -0.1"),
        (lambda p: optim.Adam(p, betas=0.9), TypeError, r"betas must be a pair \(beta1, beta2\); got 0.9"),
        (lambda p: optim.Adam(p, eps=-1e-8), ValueError, "eps must be >= 0.0; got -1e-08"),
        (lambda p: optim.Adam(p, amsgrad="yes"), TypeError, "amsgrad must be True or False"),
        (lambda p: optim.SGD([1, 2], lr=0.1), TypeError, "params must be a dict of parameter arrays"),
        (lambda p: optim.SGD({}, lr=0.1), ValueError, "at least one parameter array"),
        (
            lambda p: optim.SGD({"W": np.zeros(3, dtype=int)}, lr=0.1),
            TypeError,
            r"params\['W'\] must be a float32",
        ),
        (
            lambda p: optim.StepLR(optim.SGD(p, lr=0.1), step_size=0),
            ValueError,
            "step_size must be >= 1; got 0",
        ),
        (
            lambda p: optim.StepLR(optim.SGD(p, lr=0.1), step_size=2, gamma=-0.5),
            ValueError,
            "gamma must be > 0.0; got -0.5",
        ),
        (
            lambda p: optim.ExponentialLR("opt", gamma=0.5),
            TypeError,
            "optimizer must be a manual_bp.optim optimizer",
        ),
    ],
)
def test_bad_hyper_parameters(make, exc, message):
    params = make_params(np.random.default_rng(0))
    with pytest.raises(exc, match=message):
        make(params)


def test_bad_gradients_change_nothing():
    rng = np.random.default_rng(4)
    params = make_params(rng)
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    opt.step(make_grads(rng, 1, 1.0)[0])
    p0 = {k: v.copy() for k, v in params.items()}
    s0 = opt.state_dict()
    good = make_grads(rng, 1, 1.0)[0]
    missing = {k: v for k, v in good.items() if k != "b2"}
    with pytest.raises(ValueError, match=re.escape("missing ['b2']")):
        opt.step(missing)
    wrong = dict(good, W2=np.zeros((3, 2)))
    with pytest.raises(
        ValueError, match=re.escape("grads['W2'] must have the shape of params['W2'], (2, 3); got (3, 2)")
    ):
        opt.step(wrong)
    nan = dict(good, b1=np.array([0.0, np.inf, 0.0]))
    with pytest.raises(ValueError, match=re.escape("grads['b1'] must be finite; got inf at index (1,)")):
        opt.step(nan)
    with pytest.raises(TypeError, match="grads must be a dict"):
        opt.step([good])
    with pytest.raises(ValueError, match="lr must be >= 0.0; got -1.0"):
        opt.lr = -1.0
    assert all(np.array_equal(params[k], p0[k]) for k in params)
    s1 = opt.state_dict()
    assert s1["step_count"] == s0["step_count"] and s1["config"] == s0["config"]
    assert all(
        np.array_equal(s1["state"]["momentum_buffer"][k], s0["state"]["momentum_buffer"][k]) for k in params
    )


# ---------------------------------------------------------------------------------------------- in place
# The step updates params and buffers in place (issue 10). These tests pin down what that must keep: a step
# that raises changes nothing, the caller's gradients are never written, buffers and params stay the same
# array objects, gradients that share memory with them are read before they are overwritten.
CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2, weight_decay=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=1e-2)),
]
CLIPS = [{}, dict(clip_norm=0.05), dict(clip_value=0.1), dict(clip_norm=1e9, clip_value=0.1)]
CONFIG_IDS = [f"{kind}-{'-'.join(f'{k}={v}' for k, v in hyper.items())}" for kind, hyper in CONFIGS]


def snapshot(params, opt):
    return {k: v.copy() for k, v in params.items()}, opt.state_dict()


def assert_unchanged(params, opt, before, what):
    p0, s0 = before
    for k in params:
        if not np.array_equal(params[k], p0[k]):
            raise AssertionError(f"{what}: params[{k!r}] changed")
    s1 = opt.state_dict()
    if s1["step_count"] != s0["step_count"] or s1["config"] != s0["config"]:
        raise AssertionError(f"{what}: step_count or config changed")
    if set(s1["state"]) != set(s0["state"]):
        raise AssertionError(f"{what}: buffers {sorted(s0['state'])} became {sorted(s1['state'])}")
    for b, bufs in s0["state"].items():
        for k, arr in bufs.items():
            if not np.array_equal(s1["state"][b][k], arr):
                raise AssertionError(f"{what}: buffer {b}[{k!r}] changed")


def bad_grads(good):
    """(what, grads, exception, message) for steps that must fail; the fault sits in the last key where it
    can, so that every key before it has passed its checks."""
    last = list(SHAPES)[-1]
    return [
        ("missing key", {k: v for k, v in good.items() if k != last}, ValueError, "missing"),
        ("wrong shape", dict(good, **{last: np.zeros((5,))}), ValueError, "must have the shape"),
        ("complex dtype", dict(good, **{last: good[last].astype(complex)}), TypeError, "real numeric"),
        ("bool dtype", dict(good, **{last: np.ones(SHAPES[last], bool)}), TypeError, "real numeric"),
        ("nan", dict(good, **{last: np.array([0.5, np.nan])}), ValueError, "must be finite; got nan"),
        ("inf first", dict(good, W1=np.full(SHAPES["W1"], -np.inf)), ValueError, "must be finite; got -inf"),
        (
            "overflow to float32",
            dict(good, **{last: np.array([1e300, 0.0])}),
            ValueError,
            "overflows float32",
        ),
        ("not a dict", [good], TypeError, "grads must be a dict"),
    ]


@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: "-".join(c) or "noclip")
@pytest.mark.parametrize("kind, hyper", CONFIGS, ids=CONFIG_IDS)
def test_failing_step_changes_nothing(kind, hyper, clip):
    """Every check runs before the first write: params, buffers and step_count stay as they were, on the
    first step (no buffer yet) and later ones, in float64 and float32."""
    for dtype in (np.float64, np.float32):
        rng = np.random.default_rng(11)
        params = make_params(rng, dtype)
        opt = getattr(optim, kind)(params, **hyper, **clip)
        for t in range(2):
            good = make_grads(rng, 1, 1.0)[0]
            for what, grads, exc, message in bad_grads(good):
                if what == "overflow to float32" and dtype == np.float64:
                    continue  # 1e300 is finite in float64
                before = snapshot(params, opt)
                with pytest.raises(exc, match=message):
                    opt.step(grads)
                assert_unchanged(params, opt, before, f"{kind} {clip} {dtype.__name__} step {t + 1}: {what}")
            opt.step(good)
        assert opt.step_count == 2


@pytest.mark.parametrize("kind, hyper", CONFIGS[1:], ids=CONFIG_IDS[1:])
def test_corrupted_buffer_fails_before_any_write(kind, hyper):
    """A buffer of the wrong shape or dtype in ``opt.state`` (last key) is an error before any update."""
    rng = np.random.default_rng(12)
    params = make_params(rng)
    opt = getattr(optim, kind)(params, **hyper)
    opt.step(make_grads(rng, 1, 1.0)[0])
    last = list(SHAPES)[-1]
    for name in opt.state:
        for bad in (np.zeros((3,)), opt.state[name][last].astype(np.float32)):
            good_buffer = opt.state[name][last]
            opt.state[name][last] = bad
            before = snapshot(params, opt)
            with pytest.raises(ValueError, match=re.escape(f"state[{name!r}][{last!r}] must be a writable")):
                opt.step(make_grads(rng, 1, 1.0)[0])
            assert_unchanged(params, opt, before, f"{kind}: bad {name}")
            opt.state[name][last] = good_buffer
        if kind != "SGD":  # (SGD restarts a missing momentum buffer with b = g, as torch's first step)
            good_buffer = opt.state[name].pop(last)
            before = snapshot(params, opt)
            with pytest.raises(
                ValueError, match=re.escape(f"state[{name!r}] has no array for params ['{last}']")
            ):
                opt.step(make_grads(rng, 1, 1.0)[0])
            assert_unchanged(params, opt, before, f"{kind}: no {name}")
            opt.state[name][last] = good_buffer


@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: "-".join(c) or "noclip")
@pytest.mark.parametrize("kind, hyper", CONFIGS, ids=CONFIG_IDS)
def test_step_never_writes_the_callers_gradients(kind, hyper, clip):
    """Clipping (biting or not), casting and weight decay work in the optimizer's scratch, never in grads:
    the dict keeps its keys and array objects and every array its bits."""
    for gdtype in (np.float64, np.float32):
        rng = np.random.default_rng(13)
        params = make_params(rng)  # float64: float32 gradients take the casting path
        opt = getattr(optim, kind)(params, **hyper, **clip)
        for g in make_grads(rng, 3, 10.0):
            g = {k: v.astype(gdtype) for k, v in g.items()}
            g["h0"] = rng.standard_normal((2, 3))
            objects, copies = dict(g), {k: v.copy() for k, v in g.items()}
            opt.step(g)
            assert g.keys() == objects.keys() and all(g[k] is objects[k] for k in g)
            for k in g:
                assert np.array_equal(g[k], copies[k]) and g[k].dtype == copies[k].dtype, (kind, clip, k)


@pytest.mark.parametrize("kind, hyper", CONFIGS, ids=CONFIG_IDS)
def test_clip_norm_under_the_threshold_is_no_clipping_bit_for_bit(kind, hyper):
    rng = np.random.default_rng(14)
    p0 = make_params(rng)
    grads = make_grads(rng, 4, 1.0)
    a, b = ({k: v.copy() for k, v in p0.items()} for _ in range(2))
    opt_a = getattr(optim, kind)(a, **hyper)
    opt_b = getattr(optim, kind)(b, **hyper, clip_norm=1e9)
    for g in grads:
        opt_a.step(g)
        opt_b.step(g)
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("clip", [{}, dict(clip_norm=0.05, clip_value=0.1)], ids=["noclip", "clip"])
@pytest.mark.parametrize("kind, hyper", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_params_and_buffers_stay_the_same_arrays(kind, hyper, clip, dtype):
    """In place: the model's arrays are the ones updated, and each buffer is allocated once (torch's
    momentum buffer at the first step, Adam's moments at construction), in the parameters' dtype.
    ``state_dict`` returns copies, never the live buffers."""
    rng = np.random.default_rng(15)
    params = make_params(rng, dtype)
    objects = dict(params)
    opt = getattr(optim, kind)(params, **hyper, **clip)
    grads = make_grads(rng, 4, 1.0)
    opt.step(grads[0])
    buffers = {(b, k): a for b, bufs in opt.state.items() for k, a in bufs.items()}
    assert len(buffers) == len(opt.state) * len(SHAPES)
    before = {k: v.copy() for k, v in params.items()}
    for g in grads[1:]:
        opt.step(g)
    assert all(params[k] is objects[k] and params[k].dtype == dtype for k in params)
    assert all(not np.array_equal(params[k], before[k]) for k in params)  # the updates landed in them
    assert {(b, k) for b, bufs in opt.state.items() for k in bufs} == set(buffers)
    for (b, k), a in buffers.items():
        assert opt.state[b][k] is a and a.dtype == dtype, (b, k)
        assert opt.state_dict()["state"][b][k] is not a


@pytest.mark.parametrize(
    "clip", [{}, dict(clip_norm=0.05), dict(clip_value=0.1)], ids=["noclip", "norm", "value"]
)
@pytest.mark.parametrize("kind, hyper", CONFIGS, ids=CONFIG_IDS)
def test_step_allocates_no_parameter_sized_array(kind, hyper, clip):
    """After the first step (buffers and scratch allocated), a step allocates nothing of a parameter's size:
    tracemalloc sees numpy's data allocations."""
    rng = np.random.default_rng(16)
    params = {"W": rng.standard_normal((100, 200)), "b": rng.standard_normal(100)}  # W: 160 kB
    grads = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(3)]
    opt = getattr(optim, kind)(params, **hyper, **clip)
    opt.step(grads[0])
    opt.step(grads[1])
    tracemalloc.start()
    try:
        opt.step(grads[2])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < params["W"].nbytes // 8, f"{kind} {clip}: a step allocated {peak} bytes at its peak"


@pytest.mark.parametrize("kind, hyper", CONFIGS, ids=CONFIG_IDS)
def test_gradients_sharing_memory_with_params_or_buffers(kind, hyper):
    """Grads that are the parameters themselves, views of them, or the optimizer's own buffers give the
    update of equal copies: the in-place order never reads a value it has already overwritten."""
    rng = np.random.default_rng(17)
    p0 = make_params(rng)
    a, b = ({k: v.copy() for k, v in p0.items()} for _ in range(2))
    opt_a = getattr(optim, kind)(a, **hyper)
    opt_b = getattr(optim, kind)(b, **hyper)
    warm = make_grads(rng, 1, 1.0)[0]
    opt_a.step(warm)
    opt_b.step(warm)
    aliases = [
        lambda opt, p: dict(p),  # every gradient is its own parameter
        lambda opt, p: {k: v[...] for k, v in p.items()},  # views of them
        lambda opt, p: dict(next(iter(opt.state.values()), p)),  # the first buffer (momentum or exp_avg)
        lambda opt, p: dict(p, W2=p["W1"][:2, :3], b1=p["W1"][0, :3]),  # views of W1, updated first
    ]
    for make in aliases:
        ga = make(opt_a, a)
        gb = {k: v.copy() for k, v in make(opt_b, b).items()}
        opt_a.step(ga)
        opt_b.step(gb)
        for k in a:
            assert np.array_equal(a[k], b[k]), k
        for name in opt_a.state:
            assert all(np.array_equal(opt_a.state[name][k], opt_b.state[name][k]) for k in a), name


def test_update_after_the_checks_cannot_raise():
    """Under np.errstate(all="raise") an overflowing update still completes (inf, as torch gives), so a
    floating-point error cannot stop a step halfway; the next step's check reports the inf."""
    params = {"W": np.array([1e300, 1.0]), "b": np.array([2.0])}
    opt = optim.SGD(params, lr=1e10, momentum=0.9)
    with np.errstate(all="raise"):
        opt.step({"W": np.array([1e300, 1.0]), "b": np.array([1.0])})
    assert opt.step_count == 1 and np.isinf(params["W"][0]) and params["W"][1] == 1.0 - 1e10


@pytest.mark.parametrize("clip", [{}, dict(clip_norm=0.05, clip_value=0.1)], ids=["noclip", "clip"])
@pytest.mark.parametrize("kind, hyper", CONFIGS, ids=CONFIG_IDS)
def test_pieces_and_strides_change_no_bit(kind, hyper, clip, monkeypatch):
    """The update runs piece by piece (``optim.PIECE_BYTES``), and over whole arrays for a parameter that is
    not C-contiguous: tiny ragged pieces (40 bytes: 5 float64 or 10 float32 entries), F-ordered parameters
    and F-ordered gradients all give the bits of the default run, in float64 and float32."""
    for dtype in (np.float64, np.float32):
        rng = np.random.default_rng(18)
        p0 = make_params(rng, dtype)
        grads = make_grads(rng, 4, 1.0)

        def run(piece_bytes, order, p0=p0, grads=grads):
            monkeypatch.setattr(optim, "PIECE_BYTES", piece_bytes)
            params = {k: np.asarray(v.copy(), order=order) for k, v in p0.items()}
            opt = getattr(optim, kind)(params, **hyper, **clip)
            for g in grads:
                opt.step({k: np.asarray(v, order=order) for k, v in g.items()})
            return params, opt.state

        ref_params, ref_state = run(optim.PIECE_BYTES, "C")
        for piece_bytes, order in [(40, "C"), (40, "F"), (1, "C")]:
            params, state = run(piece_bytes, order)
            for k in params:
                assert np.array_equal(params[k], ref_params[k]), (dtype, piece_bytes, order, k)
            for b in ref_state:
                for k in params:
                    assert np.array_equal(state[b][k], ref_state[b][k]), (dtype, piece_bytes, order, b, k)
