"""The one verification harness: tolerances, problem generators, the kink guard, loss-at-params, the oracle.

``manual-bp check``, the test suite and the benchmarks all check gradients through this module, so that they
draw from one distribution and judge by one table. The error metric is ``gradcheck.rel_error`` (norm-wise
relative error per parameter array, with a floor), re-exported here; the torch oracle is
``manual_bp.reference`` (torch's own modules with our weights copied in), imported only by :func:`oracle`.

Problem generators
------------------
``mlp_problem(pick, ...)`` and ``recurrent_problem(pick, ...)`` build a random model with random non-zero
parameters (both biases included: a dropped bias cannot hide behind a zero) and a matching batch. Every random
decision goes through ``pick``, an object with

- ``int(lo, hi, label)``: an integer in [lo, hi];
- ``choice(options, label, sweep=False)``: one of ``options``;
- ``bool(label)``: True or False;
- ``seed(label)``: a 32-bit seed for the NumPy generator that fills the arrays.

:class:`RngPick` draws them from a NumPy generator (``manual-bp check``; with ``index=i`` the ``sweep``
choices cycle through their options, so that a short table still shows every loss and dtype);
``tests/strategies.py`` supplies one that draws them with hypothesis (so that failures shrink). Either way the
same function decides what a problem looks like.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from .gradcheck import compare_grads, numerical_grad, rel_error
from .models import MODELS, RECURRENT_MODELS

__all__ = [
    "TOLERANCES",
    "Allowance",
    "allowance",
    "KINK_MARGIN",
    "rel_error",
    "compare_grads",
    "assert_grads_close",
    "assert_scalar_close",
    "fd_grads",
    "loss_at",
    "Problem",
    "RngPick",
    "mlp_problem",
    "logreg_problem",
    "recurrent_problem",
    "off_kink",
    "oracle",
]


# ---------------------------------------------------------------------------------------------- tolerances
@dataclass(frozen=True)
class Allowance:
    """How closely a gradient of a model of one dtype must match each oracle (errors as ``rel_error``)."""

    torch: float  # against torch's modules computing in float64
    torch_floor: float
    fd: float  # against central differences of a float64 copy of the model
    fd_floor: float
    fd_eps: float  # the central-difference step


#: The one tolerance table, keyed by the dtype of the model under test. The reasons, once:
#:
#: - torch, float64: both sides compute the same exact gradient with different summation orders, so they agree
#:   to a few ulps times the depth of the computation: 1e-10. The floor 1e-12 only keeps 0/0 out.
#: - torch, float32: torch computes in float64 (the exact answer), so the allowance is float32's epsilon
#:   (1.2e-7) times the growth of rounding error through layers and time steps: 1e-4.
#: - finite differences: always of a float64 copy (float32 differences are too coarse to mean anything), step
#:   1e-6: truncation O(eps^2 |E'''|) ~ 1e-12 and rounding ~1e-16 |E| / eps ~ 1e-10 |E|, so a loss of order 1
#:   gives gradients good to ~1e-10 absolute, inside ``fd * fd_floor`` = 1e-9.
TOLERANCES = {
    "float64": Allowance(torch=1e-10, torch_floor=1e-12, fd=1e-6, fd_floor=1e-3, fd_eps=1e-6),
    "float32": Allowance(torch=1e-4, torch_floor=1e-12, fd=1e-6, fd_floor=1e-3, fd_eps=1e-6),
}

#: no relu pre-activation may lie this close to 0 where finite differences (step 1e-6) are taken
KINK_MARGIN = 1e-4


def allowance(dtype) -> Allowance:
    """The row of :data:`TOLERANCES` for a model or array dtype."""
    return TOLERANCES[np.dtype(dtype).name]


def assert_grads_close(ours: dict, ref: dict, tol: float, floor: float, what: str = "", keys=None):
    """Raise AssertionError naming each bad parameter: shape, worst index, both values, error, allowance."""
    for k in keys if keys is not None else ref:
        if k not in ours:
            raise AssertionError(f"{what}{k}: missing from the gradients under test ({sorted(ours)})")
        if np.shape(ours[k]) != np.shape(ref[k]):
            raise AssertionError(f"{what}{k}: shape {np.shape(ours[k])} != reference {np.shape(ref[k])}")
    result = compare_grads(ours, ref, tol=tol, floor=floor, keys=keys)
    if not result.ok:
        lines = "\n".join(f"  {r}" for r in result.failures())
        raise AssertionError(f"{what}gradients differ from the reference:\n{lines}")
    return result


def assert_scalar_close(ours: float, ref: float, tol: float, what: str):
    """Raise AssertionError unless ``|ours - ref| <= tol * max(|ours|, |ref|, 1)``."""
    err = abs(ours - ref) / max(abs(ours), abs(ref), 1.0)
    if not err <= tol:
        raise AssertionError(
            f"{what}: got {ours!r}, reference {ref!r}, error {err:.3e} > allowance {tol:.1e}"
        )


# ------------------------------------------------------------------------------------------- loss at params
def _state_keys(model) -> list:
    return [f"{part}0" for part in getattr(model, "STATES", ())]


def with_params(model, params: dict, fn):
    """``fn()`` with ``params`` (its entries for the model's own keys) swapped into ``model``, which gets its
    own parameters back afterwards, whatever ``fn`` does."""
    own = model.params
    model.params = {k: params[k] for k in own}
    try:
        return fn()
    finally:
        model.params = own


def loss_at(model, X, Y, **kwargs):
    """``f(params) -> float``: ``model.loss(X, Y, **kwargs)`` with ``params`` swapped in, then restored.

    For a recurrent model ``params`` may also hold the initial state ``"h0"`` (and ``"c0"``): they replace
    ``kwargs["h0"]``, so that finite differences reach the initial state as BPTT does (B4).
    """
    states = _state_keys(model)

    def f(params):
        kw = dict(kwargs)
        if states and all(n in params for n in states):
            kw["h0"] = model.public_state(tuple(params[n] for n in states))
        return with_params(model, params, lambda: model.loss(X, Y, **kw))

    return f


def fd_grads(f, params: dict, keys=None, eps=TOLERANCES["float64"].fd_eps) -> dict:
    """Central differences of ``f(params)`` (float64), at the table's step."""
    return numerical_grad(f, params, eps=eps, keys=keys)


# ---------------------------------------------------------------------------------------------- problems
@dataclass
class Problem:
    """A model and one batch; ``kwargs()`` are the keyword arguments of its ``loss_and_grad``."""

    model: object
    X: np.ndarray
    Y: np.ndarray
    h0: object = None
    mask: np.ndarray = None
    truncate: int = None
    extra: dict = field(default_factory=dict)

    def kwargs(self, truncate=True) -> dict:
        if self.model.BATCH_AXIS == 0:
            return {}
        kw = {"h0": self.h0, "mask": self.mask}
        if truncate:
            kw["truncate"] = self.truncate
        for key in ("lengths", "dropout_masks"):  # torch's options, drawn with stacked=True
            if self.extra.get(key) is not None:
                kw[key] = self.extra[key]
        return kw

    @property
    def quantity(self) -> str:
        """What is checked: "grad" (``loss_and_grad``), "hvp" (the Hessian product along ``extra["v"]``),
        "snapshots" (checkpointed BPTT with ``extra["snapshots"]``) or "rtrl"."""
        return self.extra.get("quantity", "grad")

    def fd_point(self) -> dict:
        """The float64 point finite differences move: the parameters, and the initial state(s) if any."""
        m = self.model
        point = {k: np.asarray(v, dtype=np.float64) for k, v in m.params.items()}
        if m.BATCH_AXIS == 1:
            N = np.shape(self.X)[getattr(m, "batch_axis", 1)]
            parts = m.state_parts(self.h0, N)
            point.update({n: np.asarray(v, dtype=np.float64) for n, v in zip(_state_keys(m), parts)})
        return point

    def as_float64(self) -> Problem:
        """The same problem with a float64 copy of the model (the same parameter values)."""
        m = self.model
        copy = type(m)(**{**m.config(), "dtype": np.float64})
        copy.params = {k: v.astype(np.float64) for k, v in m.params.items()}
        h0 = self.h0
        if h0 is not None:
            h0 = copy.public_state(tuple(np.asarray(p, dtype=np.float64) for p in copy.state_parts(h0)))
        X = self.X if np.asarray(self.X).dtype.kind in "iu" else np.asarray(self.X, dtype=np.float64)
        Y = self.Y if np.asarray(self.Y).dtype.kind in "iu" else np.asarray(self.Y, dtype=np.float64)
        return Problem(copy, X, Y, h0, self.mask, self.truncate, dict(self.extra))

    def describe(self) -> str:
        q = self.quantity
        what = "" if q == "grad" else " RTRL" if q == "rtrl" else " Hv" if q == "hvp" else " trace" if (
            q == "trace") else f" snapshots={self.extra['snapshots']}"
        return self._describe_problem() + what

    def _describe_problem(self) -> str:
        m = self.model
        if m.BATCH_AXIS == 0:
            return (f"{m.sizes} {m.hidden_activation}/{m.output_activation} {m.loss_name} "
                    f"N={len(self.X)}")
        T, N = np.shape(self.X)[:2]
        if getattr(m, "batch_first", False):
            T, N = N, T
        nl = f" {m.nonlinearity}" if hasattr(m, "nonlinearity") else ""
        options = "".join(f" {k}={v}" for k, v in m.config().items()
                          if k not in ("input_size", "hidden_size", "output_size", "loss", "dtype", "seed",
                                       "nonlinearity"))
        return (f"D={m.input_size} H={m.hidden_size} K={m.output_size} T={T} N={N}{nl}{options} "
                f"{m.loss_name} {'ids' if np.ndim(self.X) == 2 else 'dense'}"
                f"{'' if self.truncate is None else f' truncate={self.truncate}'}"
                f"{' mask' if self.mask is not None else ''}"
                f"{' lengths' if self.extra.get('lengths') is not None else ''}")


class RngPick:
    """The generators' random decisions from a NumPy generator; ``index`` makes ``sweep`` choices cycle."""

    def __init__(self, rng: np.random.Generator, index=None):
        self.rng, self.index = rng, index

    def int(self, lo, hi, label=None) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def choice(self, options, label=None, sweep=False):
        options = list(options)
        if sweep and self.index is not None:
            return options[self.index % len(options)]
        return options[int(self.rng.integers(len(options)))]

    def bool(self, label=None) -> bool:
        return bool(self.rng.integers(2))

    def seed(self, label=None) -> int:
        return int(self.rng.integers(2**32))


HIDDEN_ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity", "softplus")
#: (loss, the output activations allowed with it)
LOSS_OUTPUTS = (
    ("squared_error", ("sigmoid", "tanh", "relu", "identity", "softplus")),
    ("cross_entropy", ("softmax",)),
    ("binary_cross_entropy", ("sigmoid",)),
)
DTYPES = (np.float64, np.float32)


def randomize_params(params: dict, rng: np.random.Generator) -> dict:
    """Non-zero random values for every parameter, biases included.

    Matrices ~ N(0, 1 / n_in) (states neither die nor blow up over 40 recurrent steps; MLP activations stay
    at unit scale), vectors ~ N(0, 0.5^2): never the zeros a bias bug could hide in.
    """
    out = {}
    for k, v in params.items():
        scale = 1.0 / np.sqrt(v.shape[1]) if v.ndim == 2 else 0.5
        out[k] = (rng.standard_normal(v.shape) * scale).astype(v.dtype)
    return out


def mlp_problem(pick, dtypes=DTYPES, max_layers=4, max_width=12, max_batch=8) -> Problem:
    """A random MLP (1..max_layers weight layers, widths 1..max_width, every activation and loss pairing)."""
    L = pick.int(1, max_layers, "weight layers")
    sizes = [pick.int(1, max_width, f"n{l}") for l in range(L + 1)]
    loss, outputs = pick.choice(LOSS_OUTPUTS, "loss", sweep=True)
    if loss == "cross_entropy":
        sizes[-1] = max(sizes[-1], 2)  # one class makes every gradient 0: a case that checks nothing
    out = pick.choice(outputs, "output activation")
    hidden = pick.choice(HIDDEN_ACTIVATIONS, "hidden activation")
    dtype = pick.choice(dtypes, "dtype", sweep=True)
    N = pick.int(1, max_batch, "batch size")
    seed = pick.seed("seed")
    rng = np.random.default_rng(seed)
    net = MODELS["MLP"](sizes, hidden, out, loss, dtype=dtype, seed=seed)
    net.params = randomize_params(net.params, rng)
    X = rng.standard_normal((N, sizes[0]))
    K = sizes[-1]
    if loss == "cross_entropy":
        Y = rng.integers(0, K, N) if pick.bool("integer labels") else rng.dirichlet(np.ones(K), N)
    elif loss == "binary_cross_entropy":
        Y = rng.uniform(0, 1, (N, K))
    else:
        Y = rng.standard_normal((N, K))
    return Problem(net, X, Y)


def logreg_problem(pick, max_inputs=8, max_batch=16) -> Problem:
    """Logistic regression, the seed's two-layer net: MLP([d, 1], sigmoid, binary cross-entropy)."""
    d = pick.int(1, max_inputs, "inputs")
    N = pick.int(2, max_batch, "batch size")
    seed = pick.seed("seed")
    rng = np.random.default_rng(seed)
    net = MODELS["MLP"]([d, 1], output_activation="sigmoid", loss="binary_cross_entropy", seed=seed)
    net.params = randomize_params(net.params, rng)
    X = rng.standard_normal((N, d))
    y = (rng.uniform(size=N) < 0.5).astype(np.float64)
    return Problem(net, X, y)


def recurrent_problem(pick, models=tuple(RECURRENT_MODELS), dtypes=DTYPES, max_T=12, max_N=4, max_size=6,
                      truncate=True, masks=True, losses=("cross_entropy", "squared_error"), stacked=False,
                      max_layers=3, dropout=False, batch_first=False) -> Problem:
    """A random RNN, LSTM or GRU and a batch of sequences.

    T 1..max_T, N 1..max_N, D, H, K 1..max_size; token ids or float inputs; either loss, a mask on a draw,
    a truncation ``0..T`` on a draw; random non-zero parameters and (for the RNN on a draw) initial state.
    Float arrays are drawn in float64 and rounded to the model's dtype, so a float64 oracle sees exactly the
    values the model sees.

    ``stacked=True`` also draws torch's options: num_layers 1..max_layers, bidirectional, bias, proj_size
    (LSTM) and padded sequences (``extra["lengths"]``), the initial state always non-zero; each
    problem has one of them for sure, in turn (a swept ``variant``: layers, bidirectional, projection,
    lengths), so that a short table shows every one. Truncation is drawn for one-direction models only.
    ``dropout=True`` (with ``stacked``) adds dropout between layers on a draw: p = 0.3, the keep masks drawn
    once into ``extra["dropout_masks"]``; the caller must pass them (a model in training mode draws new masks
    on every call). ``extra`` holds keyword arguments of ``loss_and_grad``; without them a problem is the same
    model on unpadded sequences. ``batch_first=True`` (with ``stacked``) draws batch-first models on a draw
    (X, Y, mask, dropout masks then N first; ``Problem.fd_point`` must read N from ``model.batch_axis``).
    """
    variant = None
    if stacked:
        variant = pick.choice(("layers", "bidirectional", "projection", "lengths"), "variant", sweep=True)
        if variant == "projection" and "LSTM" in models:
            models = ("LSTM",)
    kind = pick.choice(models, "model")
    T = pick.int(1, max_T, "T")
    N = pick.int(1, max_N, "N")
    D, H, K = (pick.int(1, max_size, name) for name in ("D", "H", "K"))
    loss = pick.choice(losses, "loss", sweep=True)
    dtype = pick.choice(dtypes, "dtype", sweep=True)
    ids = pick.bool("token ids")
    if loss == "cross_entropy":
        K = max(K, 2)
    kw = {}
    if kind == "RNN":
        kw["nonlinearity"] = pick.choice(("tanh", "relu"), "nonlinearity")
    if stacked:
        kw["num_layers"] = pick.int(2 if variant == "layers" else 1, max(max_layers, 2), "num_layers")
        kw["bidirectional"] = variant == "bidirectional" or pick.bool("bidirectional")
        kw["batch_first"] = batch_first and pick.bool("batch_first")
        kw["bias"] = pick.choice((True, True, False), "bias")
        if kind == "LSTM" and (variant == "projection" or pick.bool("projection")):
            H = max(H, 2)
            kw["proj_size"] = pick.int(1, H - 1, "proj_size")
        if dropout and kw["num_layers"] > 1 and pick.bool("dropout"):
            kw["dropout"] = 0.3
    seed = pick.seed("seed")
    model = RECURRENT_MODELS[kind](D, H, K, loss=loss, dtype=dtype, seed=seed, **kw)
    rng = np.random.default_rng(seed)
    model.params = randomize_params(model.params, rng)
    X = rng.integers(0, D, (T, N)) if ids else rng.standard_normal((T, N, D)).astype(dtype)
    if loss == "cross_entropy":
        Y = rng.integers(0, K, (T, N))
    else:
        Y = rng.standard_normal((T, N, K)).astype(dtype)
    h0 = None
    if stacked:
        parts = tuple((rng.standard_normal(p.shape) * 0.5).astype(dtype) for p in model.state_parts(None, N))
        h0 = model.public_state(parts)
    elif kind != "RNN" or pick.bool("non-zero h0"):
        parts = tuple((rng.standard_normal((N, H)) * 0.5).astype(dtype) for _ in model.STATES)
        h0 = model.public_state(parts)
    mask = (rng.uniform(size=(T, N)) < 0.7) if masks and pick.bool("mask") else None
    can_truncate = truncate and not (stacked and kw["bidirectional"])
    k = pick.int(0, T, "truncate") if can_truncate and pick.bool("truncated") else None
    extra = {}
    if stacked:
        if variant == "lengths" or pick.bool("lengths"):
            extra["lengths"] = rng.integers(1, T + 1, N)
        if model.dropout:
            extra["dropout_masks"] = [rng.uniform(size=(T, N, model.output_features)) >= model.dropout
                                      for _ in range(model.num_layers - 1)]
        if model.batch_first:  # the data, mask and dropout masks in the batch-first layout
            X = np.swapaxes(X, 0, 1).copy()
            Y = np.swapaxes(Y, 0, 1).copy()
            mask = None if mask is None else mask.T.copy()
            if "dropout_masks" in extra:
                extra["dropout_masks"] = [np.swapaxes(m, 0, 1).copy() for m in extra["dropout_masks"]]
    return Problem(model, X, Y, h0, mask, k, extra)


def second_order_problem(pick, family="mlp") -> Problem:
    """A gradient problem (MLP, or one-layer RNN/LSTM/GRU without truncation) and a random direction v:
    the Hessian-vector product's check (``quantity`` "hvp")."""
    if family == "mlp":
        p = mlp_problem(pick, max_layers=3, max_width=8, max_batch=6)
    else:
        p = recurrent_problem(pick, models=(family,), truncate=False, max_T=8)
    rng = np.random.default_rng(pick.seed("direction seed"))
    v = {k: rng.standard_normal(a.shape).astype(a.dtype) for k, a in p.model.params.items()}
    p.extra.update(quantity="hvp", v=v)
    return p


def long_bptt_problem(pick, family="RNN", method="snapshots") -> Problem:
    """A one-layer recurrent problem (no truncation) for checkpointed BPTT (a budget of 1..T+1 snapshots,
    or "sqrt") or RTRL (``method="rtrl"``, small H)."""
    p = recurrent_problem(pick, models=(family,), truncate=False, max_size=6 if method == "snapshots" else 4)
    if method == "snapshots":
        T = np.shape(p.X)[0]
        s = pick.choice(["sqrt"] + list(range(1, T + 2)), "snapshots")
        p.extra.update(quantity="snapshots", snapshots=s)
    else:
        p.extra.update(quantity="rtrl")
    return p


def trace_problem(pick, family="mlp") -> Problem:
    """A problem whose checked quantity is ``model.trace``'s every entry (``quantity`` "trace"): an MLP, or a
    recurrent net with torch's options (layers, directions, projection, lengths, dropout, batch-first)."""
    if family == "mlp":
        p = mlp_problem(pick, max_layers=3, max_width=6, max_batch=4)
    else:
        p = recurrent_problem(pick, models=(family,), max_T=6, max_N=3, max_size=4, stacked=True,
                              max_layers=2, dropout=True, batch_first=True)
    p.extra.update(quantity="trace")
    return p


#: trace entries with no torch counterpart: the window is its definition, the masks are what was passed
TRACE_UNCHECKED = ("window", "dropout_mask_l")


def _trace_entries(tr) -> dict:
    """A trace's gradients under the parameters' names (finite differences) and its entries (torch)."""
    entries = {k: v for k, v in tr.items() if not k.startswith(TRACE_UNCHECKED)}
    return {**tr.grads, **entries}


def quantity_of(problem: Problem, model=None) -> dict:
    """The checked quantity of ``problem`` (``model`` replaces the problem's, e.g. a float64 copy)."""
    m = problem.model if model is None else model
    X, Y, q = problem.X, problem.Y, problem.quantity
    if m.BATCH_AXIS == 0:
        if q == "hvp":
            return m.hvp(X, Y, problem.extra["v"])[2]
        if q == "trace":
            return _trace_entries(m.trace(X, Y, input_grad=True))
        return m.loss_and_grad(X, Y, input_grad=True)[1]
    kw = problem.kwargs()
    if q == "trace":
        return _trace_entries(m.trace(X, Y, **kw))
    if q == "hvp":
        return m.hvp(X, Y, problem.extra["v"], h0=kw["h0"], mask=kw["mask"])[2]
    if q == "rtrl":
        return m.rtrl(X, Y, h0=kw["h0"], mask=kw["mask"])[1]
    if q == "snapshots":
        return m.loss_and_grad(X, Y, h0=kw["h0"], mask=kw["mask"], snapshots=problem.extra["snapshots"])[1]
    return m.loss_and_grad(X, Y, **kw)[1]


def torch_quantity(ref, problem: Problem) -> dict:
    """The oracle's value of the checked quantity, computed in float64 whatever the model's dtype: autograd's
    gradient (the full-BPTT one for snapshots and RTRL), or torch's double-backward Hessian product."""
    m, X, Y = problem.model, problem.X, problem.Y
    if problem.quantity == "hvp":
        if m.BATCH_AXIS == 0:
            from .reference.second_order import mlp_hvp

            return mlp_hvp(m, X, Y, problem.extra["v"], dtype=np.float64)[2]
        from .reference.recurrent_second_order import recurrent_hvp

        return recurrent_hvp(m, X, Y, problem.extra["v"], h0=problem.h0, mask=problem.mask,
                             dtype=np.float64)[2]
    if problem.quantity == "trace":  # every entry, read off torch's modules (reference/trace.py)
        kw = {"input_grad": True} if m.BATCH_AXIS == 0 else problem.kwargs()
        values = ref.trace.trace(m, X, Y, **kw)
        if not values.get("pinning_error", 0.0) < 1e-12:
            raise RuntimeError(f"the trace oracle's gates do not rebuild torch's states: "
                               f"{values['pinning_error']}")
        return {k: v for k, v in values.items() if k != "pinning_error"}
    kw = {"input_grad": True} if m.BATCH_AXIS == 0 else problem.kwargs(truncate=problem.quantity == "grad")
    return ref.loss_and_grad(m, X, Y, dtype=np.float64, **kw)[1]


def off_kink(problem: Problem, margin=KINK_MARGIN) -> bool:
    """True unless a relu pre-activation lies within ``margin`` of 0 (a difference step could cross it)."""
    m = problem.model
    if m.BATCH_AXIS == 0:
        return m.kink_distance(problem.X) > margin
    kw = {k: v for k, v in problem.kwargs().items() if k in ("h0", "lengths", "dropout_masks")}
    return m.kink_distance(problem.X, **kw) > margin


# ---------------------------------------------------------------------------------------------- the oracle
def oracle():
    """``(reference module, None)``, or ``(None, reason)`` when torch is not installed."""
    try:
        return importlib.import_module(f"{__package__}.reference"), None
    except ImportError as exc:  # torch missing: finite differences alone
        return None, str(exc)


def torch_grads(ref, problem: Problem) -> tuple:
    """torch's ``(loss, grads)`` for the problem, computed in float64 whatever the model's dtype."""
    return ref.loss_and_grad(problem.model, problem.X, problem.Y, dtype=np.float64, **problem.kwargs())


def fd_check(problem: Problem):
    """The quantity of a float64 copy against central differences: of the loss for a gradient (a truncated
    one is checked untruncated), of our own gradient along v for a Hessian product (``hvpcheck``)."""
    p64 = problem.as_float64()
    tol = allowance(np.float64)
    if p64.quantity == "hvp":
        from .second_order import hvpcheck

        m, kw = p64.model, p64.kwargs(truncate=False)
        hkw = {k: kw[k] for k in kw if k in ("h0", "mask")}
        v = {k: np.asarray(a, dtype=np.float64) for k, a in p64.extra["v"].items()}
        return hvpcheck(lambda p: with_params(m, p, lambda: m.loss_and_grad(p64.X, p64.Y, **kw)[1]),
                        dict(m.params), v,
                        lambda p, d: with_params(m, p, lambda: m.hvp(p64.X, p64.Y, d, **hkw)[2]),
                        tol=tol.fd, floor=tol.fd_floor)
    point = p64.fd_point()
    kw = p64.kwargs(truncate=False)
    numeric = fd_grads(loss_at(p64.model, p64.X, p64.Y, **{k: v for k, v in kw.items() if k != "h0"}), point)
    ours = quantity_of(Problem(p64.model, p64.X, p64.Y, p64.h0, p64.mask, None, p64.extra))
    return compare_grads(ours, numeric, tol=tol.fd, floor=tol.fd_floor, keys=list(numeric))
