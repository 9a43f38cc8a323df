"""A gradient checker for your own code: a Taylor-remainder verdict, kinks told apart from bugs, VJP and JVP.

Central differences (the first version's reference, kept to localise an error element by element):

    dE/dtheta_i ~ [E(theta + eps e_i) - E(theta - eps e_i)] / (2 eps)         (FD)

Error measure, per parameter array (norm-wise relative error with a floor):

    (GC1)  err = max_i |g_i - r_i| / max(max_i |g_i|, max_i |r_i|, floor)

where g is the gradient under test and r the reference. Dividing by the array's largest magnitude, not each
entry's, keeps an entry that is zero by cancellation from turning rounding noise into a huge "relative"
error; the floor keeps 0/0 from becoming NaN. ``compare_grads`` and ``rel_error`` compute it.

Why one fixed step is not enough. A central difference has truncation error O(eps^2 |E'''|) and rounding
error ~ u |E| / eps (u: the unit roundoff, 2.2e-16 in float64, 1.2e-7 in float32). eps = 1e-6 suits float64
weights of order 1; in float32 the rounding term is ~0.1, so every correct gradient fails; for float64
weights of order 1e-6 the step moves a weight by 100% and truncation fails a correct gradient. So
``gradcheck`` decides with a test that has no step to tune.

The Taylor-remainder test. Along a direction v, with the gradient g under test,

    (GC2)  R(h) = E(theta + h v) - E(theta) - h <g, v>,     r(h) = |R(h)|
                = h (<grad E, v> - <g, v>) + h^2/2 v^T H v + h^3/6 E'''[v] + ...

so r falls as h^2 when <g, v> is right and as h when it is wrong, whatever the step. Steps and direction:

    (GC3)  h_j = h_max 10^(-j)  (h_max = 0.1),    v_i = z_i s_k,  z_i ~ N(0, 1),

where s_k is the root-mean-square of the array that element i belongs to (of all parameters, or 1, when
that is zero): h is a relative size of the move, whatever the scale of theta. The move is made in the
parameter's dtype, Delta = fl(theta + h v) - theta, and <g, Delta> (exact in float64) replaces h <g, v>,
so the rounding of theta + h v to float32 adds nothing to R. When E barely responds to h_max (weights of
1e-6 under a loss of order 1: the change is under 1e5 noise floors), h_max grows tenfold, up to 1e4, until
it does, provided that response is below 1e-6 |E| (so only in float64); a grown descent is believed only
if it passes or fails cleanly (below), else the verdict at h = 0.1 stands.

Rounding noise. With u the unit roundoff E is computed in (the parameters' dtype's, or float32's when every
value E returns is exactly a float32), a remainder below the floor

    (GC4)  nu(h) = kappa max(u |E(theta + h v)|, u |E(theta)|, n_emp),   kappa = 10,

carries no information. n_emp is measured: half the second difference |R(k u) + R(-k u)| / 2 at moves of
k = 16 and 64 units of roundoff, where every Taylor term is far below rounding and the gradient cancels,
so it counts E's own cancellation (a loss that is a small difference of large terms rounds far worse
than u |E|); if E does not change at all under those moves (its values come in quanta), the moves grow
fourfold, up to 1e-4, until it does, and the smaller change seen, about one quantum, joins n_emp. The
descent in h stops once both R(h) and R(-h) lie below nu at two consecutive steps, or once four steps
show a clean first-order odd part (below) far above nu beside an O(h^2) even part.

Orders. Fitting r alone mixes two things: where h^2 v^T H v / 2 is large (float32 keeps the steps at
1e-3..1e-1) it hides a first-order error, and where the h and h^2 terms cancel r dips to zero. R(h) and
R(-h) separate them into an even part and an odd part:

    (GC5)  E(h) = [R(h) + R(-h)] / 2 = h^2/2 v^T H v + O(h^4)          (curvature; at a kink: O(h))
           S(h) = [R(h) - R(-h)] / 2 = h (<grad E, v> - <g, v>) + O(h^3)   (the gradient's error)

The window is the three smallest steps where R(h) or R(-h) exceeds 3 nu; there the least-squares slopes of
log r, log |S| and log |E| against log h are the orders p, s and q (each over its points above the floor).

The verdict. The odd part decides; the even part tells kinks and curvature from bugs:

    (GC6)  s in [0.6, 1.3) over 3 steps, or in 1 +- 0.15 over 2
           with S > 2 |E| at both (a symmetric remainder):          "fail" (S falls as h: <g, v> is off),
                                                                   unless a kink explains it: "kink";
           s in [1.3, 2):                                          "unresolved" (steps not asymptotic);
           S below the floor, or s >= 2 (S falls as h^3):          "pass", or "kink" if q < 1.5;
           S > 2 |E| but above the floor at one step only:         p decides (>= 1.5 pass, else fail);
           nothing above the floor at any step:                    "rounding" (a pass);
           and a pass (or rounding) whose odd part does not bound a first-order error below 1% of the
           gradient's own term, min_h max(|S(h)|, nu) / (h ||g . v||_2) > 1e-2: "unresolved" (unless
           E does not move at all and g is zero along v).

r's own order p (about 2 right, about 1 wrong) is reported beside. If E is exactly linear along v, a right
gradient leaves only rounding and a wrong one gives S = h |delta| exactly; if E is exactly quadratic, S is
rounding for a right gradient. Resolution: an error delta in <g, v> shows once h |delta| clears nu while
the O(h^3) part stays below it, about (kappa u |E|)^(2/3) |E'''|^(1/3): ~1e-10 of a directional derivative
in float64, ~1e-4 in float32.

Kinks. Where E is not differentiable along v (a relu pre-activation at 0) the one-sided slopes differ and
the even part is first order: |E(h)| ~ h |phi'(0+) - phi'(0-)| / 2 (q ~ 1) instead of h^2 |v^T H v| / 2.
That is reported "not differentiable here", not as a failure (Chainer's detect_nondifferentiable compares
one-sided fits the same way), unless S exceeds twice E (the gradient lies well outside the one-sided
slopes). A kink crossed at a small distance h_k (a relu pre-activation within 1% of 0, seen in float32,
whose floor keeps the steps large) adds Delta_s (h - h_k) to one side only: a first-order term in the even
part as large as the odd part's (least-squares fits E = alpha h + beta h^2, S = gamma h + zeta h^3 over the
window: |alpha| >= |gamma| / 2; or, at the smallest steps, |E| >= |S| / 2 with |E| / |S| shrinking less
than fivefold from the step before, where a smooth function's shrinks tenfold), or E rising faster than
h^2.5, or the larger one-sided remainder dropping off a cliff (by more than (h_j / h_j+1)^2.5) below the
window; a first-order S is then a kink
too. A grown descent's "fail" counts only if clean: no kink sign and q in [1.5, 2.5] (or E unresolved).
Per element, one-sided differences D+ and D- that disagree by more than half of
max(|D+| + |D-|, 0.1 max |central difference| of the array) mark the element as sitting on a kink.

Directions. Full mode: one direction per parameter array; when the array's central differences (GC7)
disagree with g beyond the allowance while that direction passed, a second one along the discrepancy
g - num itself (a random direction can be nearly orthogonal to an error). Fast mode: a few directions over
all parameters; when one fails, each array is probed along its share of that direction (then along a
fresh one) to name the culprit, and a failure no array confirms is reported "unresolved".

Central differences per element (full mode), with a step sized for the dtype and the scale:

    (GC7)  eps_i = u^(1/3) max(|theta_i|, s_k),
           g_i ~ [E(theta + Delta+ e_i) - E(theta + Delta- e_i)] / (Delta+ - Delta-),

with Delta+- the actual moves in the parameter's dtype; u^(1/3) balances the truncation error
eps^2 |E'''| against the rounding error u |E| / eps.

Vector-valued functions. For y = f(x) with Jacobian J, a random Gaussian upstream vector w turns a VJP into
the gradient of a scalar, so GC2-GC7 apply unchanged:

    (GC8)  F(x) = <w, f(x)>,   grad F = J^T w = vjp(w)

and a JVP is checked by the vector remainder along a tangent t (its even and odd parts as in GC5):

    (GC9)  R(h) = f(x + h t) - f(x) - h jvp(t),   r(h) = ||R(h)||_2,   floor from u ||f||

Given both, the identity that defines the transpose is checked directly, and by differences:

    (GC10) <vjp(w), t> = <w, J t> = <w, jvp(t)> ~ <w, f(x + h t) - f(x - h t)> / (2 h)

(the two analytic sides must agree to rounding: |difference| <= 1e4 u sum_i |terms_i|).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

H_MAX = 0.1  # (GC3) the largest move, relative to the parameters' scale
H_RATIO = 0.1  # (GC3) ratio of consecutive steps
MAX_STEPS = 40  # (GC3) at most this many steps per direction
KAPPA = 10.0  # (GC4) safety factor on the noise floor
PROBES = (16.0, 64.0)  # (GC4) moves, in units of roundoff, that measure E's rounding noise
QUANTUM_MAX_MOVE = 1e-4  # (GC4) the largest relative move tried to find E's quantum
PASS_RESOLUTION = 1e-2  # (GC6) a pass needs the odd part to bound an error below 1% of ||g . v||
WINDOW = 3  # (GC5) smallest steps above the floor used for the fits
MARGIN = 3.0  # (GC5) a window step has a one-sided remainder above MARGIN times its floor
ORDER_PASS = 1.5  # (GC6) order 2 (odd part: 3) passes, order 1 fails
ODD_MIN = 0.6  # (GC6) an odd part falling slower than h^0.6 is noise, not a first-order term ...
ODD_MAX = 1.3  # (GC6) ... and one falling faster than h^1.3 is not cleanly first order
ODD_TIGHT = 0.15  # (GC6) over two steps only, a failure needs an odd order within 1 +- ODD_TIGHT
ODD_DOMINANT = 2.0  # (GC6) at a kink, the odd part must exceed twice the even part to fail
CROSS_ORDER = 2.5  # (GC6) faster than h^2.5 beside a first-order odd part: a kink crossed
KINK_SHARE = 0.5  # (GC6) a first-order even term this large beside the odd one: a kink crossed
GROW = 1e5  # (GC3) below GROW floors of change at h_max, the top step grows tenfold ...
GROW_REL = 1e-6  # (GC3) ... if that response is below GROW_REL |f| (so float64 only) ...
H_CAP = 1e4  # (GC3) ... up to this relative move

VERDICTS = ("pass", "rounding", "unresolved", "fail", "kink", "skipped", "undefined")
_TAGS = {"kink": "KINK", "skipped": "SKIP", "unresolved": "UNRESOLVED"}


class GradcheckError(Exception):
    """The checker cannot trust the code under test: it writes into its inputs or is not deterministic."""


class InPlaceModificationError(GradcheckError, ValueError):
    """The function under test wrote into an array it received (the checker passes them read-only)."""


class NondeterministicError(GradcheckError, RuntimeError):
    """Two calls of the function under test at the same point disagreed."""


def _json_float(x):
    x = float(x)
    return x if math.isfinite(x) else str(x)


# ----------------------------------------------------------------------------------------------- reports


@dataclass
class TaylorProbe:
    """The Taylor test along one direction (GC2-GC6).

    ``steps`` are the relative moves h, ``remainders`` r(h), ``floors`` the noise floor nu(h) (GC4);
    ``order`` p, ``odd_order`` s and ``kink_order`` q are fitted over ``window`` (GC5); ``analytic`` is the
    directional derivative the gradient under test gives (<g, v>), ``numeric`` the central difference.
    """

    label: str
    verdict: str
    order: float | None
    steps: list
    remainders: list
    floors: list
    window: tuple = ()
    kink_order: float | None = None
    odd_order: float | None = None
    analytic: float = float("nan")
    numeric: float = float("nan")
    detail: str = ""
    bound: float = float("inf")  # the odd part's bound on a first-order error, relative to ||g . v||

    @property
    def ok(self) -> bool:
        return self.verdict not in ("fail", "undefined")

    @property
    def tag(self) -> str:
        return _TAGS.get(self.verdict, "PASS" if self.ok else "FAIL")

    def describe(self) -> str:
        if self.verdict == "rounding":
            return f"right to rounding (no remainder above the noise floor: {self.detail})"
        if self.verdict in ("unresolved", "undefined", "skipped") and not self.window:
            return f"{'not resolved' if self.verdict == 'unresolved' else self.verdict}: {self.detail}"

        def fmt(x):
            return "n/a" if x is None else f"{x:.2f}"

        text = (
            f"Taylor order {fmt(self.order)} (right ~2, wrong ~1), odd part {fmt(self.odd_order)} "
            "(right >= 2 or noise, wrong ~1)"
        )
        if self.window:
            text += f" over h in [{self.window[0]:.1e}, {self.window[1]:.1e}]"
        if self.verdict == "kink":
            text = (
                f"not differentiable here (one-sided slopes differ: the even part falls as "
                f"h^{fmt(self.kink_order)}: a kink, or curvature too strong for the steps this precision "
                f"allows); {text}"
            )
        if self.verdict == "pass" and math.isfinite(self.bound):
            text += f"; right to {self.bound:.0e} of ||g . v||"
        if self.verdict in ("fail", "kink", "unresolved") and math.isfinite(self.analytic):
            text += f"; directional derivative: gradient {self.analytic:.6g}, differences {self.numeric:.6g}"
        if self.detail:
            text += f"; {self.detail}"
        return text

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "verdict": self.verdict,
            "order": self.order,
            "odd_order": self.odd_order,
            "kink_order": self.kink_order,
            "window": list(self.window),
            "analytic": _json_float(self.analytic),
            "numeric": _json_float(self.numeric),
            "steps": [float(h) for h in self.steps],
            "remainders": [_json_float(r) for r in self.remainders],
            "floors": [float(x) for x in self.floors],
            "bound": _json_float(self.bound),
            "detail": self.detail,
        }

    def __str__(self):
        return f"{self.label}: {self.describe()}"


@dataclass
class ParamReport:
    """Comparison of one parameter array.

    ``error`` (GC1), ``index``, ``value`` and ``reference`` come from central differences (GC7), or, in fast
    mode where none are taken, from the directional derivatives along the array's direction (index ``()``).
    ``verdict`` is None for a plain comparison (``compare_grads``: ok when error <= tol); ``gradcheck`` sets
    it from the Taylor test (GC6): "pass", "rounding", "unresolved", "fail", "kink", "skipped", "undefined".
    """

    name: str
    shape: tuple
    error: float  # norm-wise relative error (GC1)
    index: tuple  # worst index
    value: float  # gradient under test at ``index``
    reference: float  # reference gradient at ``index``
    tol: float
    verdict: str | None = None
    order: float | None = None
    taylor: TaylorProbe | None = None
    kink_elements: list = field(default_factory=list)
    source: str = "central differences"

    @property
    def ok(self) -> bool:
        if self.verdict is None:
            return bool(self.error <= self.tol)
        return self.verdict not in ("fail", "undefined")

    @property
    def tag(self) -> str:
        return _TAGS.get(self.verdict, "PASS" if self.ok else "FAIL")

    def _comparison(self) -> str:
        return (
            f"error {self.error:.3e} (allowance {self.tol:.1e}) at index {self.index}: "
            f"got {self.value!r}, reference {self.reference!r}"
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "verdict": self.verdict if self.verdict is not None else ("pass" if self.ok else "fail"),
            "ok": self.ok,
            "order": self.order,
            "error": _json_float(self.error),
            "allowance": self.tol,
            "index": list(self.index),
            "value": _json_float(self.value),
            "reference": _json_float(self.reference),
            "reference_source": self.source,
            "kink_elements": [list(i) for i in self.kink_elements],
            "taylor": None if self.taylor is None else self.taylor.to_dict(),
        }

    def __str__(self):
        if self.verdict is None:
            return f"{self.name} {self.shape}: {self._comparison()}"
        text = f"{self.name} {self.shape}: " + (
            self.taylor.describe() if self.taylor is not None else self.verdict
        )
        if not math.isnan(self.error):
            text += f" | {self.source}: {self._comparison()}"
        if self.kink_elements:
            shown = ", ".join(str(i) for i in self.kink_elements[:5])
            more = f" and {len(self.kink_elements) - 5} more" if len(self.kink_elements) > 5 else ""
            text += f" | elements at a kink: {shown}{more}"
        return text


@dataclass
class GradcheckResult:
    """Per-parameter reports (and, in fast mode, per-direction probes); ``ok`` when nothing failed.

    ``reports``: name -> :class:`ParamReport`. ``directions``: the random directions' :class:`TaylorProbe`
    (fast mode). ``notes``: what the checker did that the reader should know (dtypes, redraws).
    ``identity``: for ``vjpcheck``/``jvpcheck``, the three numbers of GC10.
    """

    reports: dict
    directions: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    mode: str = "compare"
    identity: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            all(r.ok for r in self.reports.values())
            and all(p.ok for p in self.directions)
            and self.identity.get("ok", True)
        )

    @property
    def max_error(self) -> float:
        return max((r.error for r in self.reports.values() if not math.isnan(r.error)), default=0.0)

    @property
    def worst(self) -> ParamReport | None:
        reports = [r for r in self.reports.values() if not math.isnan(r.error)]
        return max(reports, key=lambda r: r.error, default=None)

    def _named(self, verdict) -> list:
        return [r.name for r in self.reports.values() if r.verdict == verdict] + [
            p.label for p in self.directions if p.verdict == verdict
        ]

    @property
    def kinks(self) -> list:
        """Names of the parameters (or directions) found not differentiable at the point."""
        return self._named("kink")

    @property
    def unresolved(self) -> list:
        """Names of the parameters (or directions) the precision could not resolve."""
        return self._named("unresolved")

    @property
    def verdict(self) -> str:
        """ "fail", else "kink" if any, else "unresolved" if any, else "pass"."""
        if not self.ok:
            return "fail"
        return "kink" if self.kinks else ("unresolved" if self.unresolved else "pass")

    def failures(self) -> list:
        """Failing parameter reports; if none fails but a random direction (fast mode) did, those probes."""
        failed = [r for r in self.reports.values() if not r.ok]
        return failed or [p for p in self.directions if not p.ok]

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "verdict": self.verdict,
            "mode": self.mode,
            "max_error": _json_float(self.max_error),
            "parameters": [r.to_dict() for r in self.reports.values()],
            "directions": [p.to_dict() for p in self.directions],
            "identity": {k: _json_float(v) if isinstance(v, float) else v for k, v in self.identity.items()},
            "notes": list(self.notes),
        }

    def __bool__(self):
        return self.ok

    def __str__(self):
        lines = []
        if self.mode != "compare":
            n_fail = sum(not r.ok for r in self.reports.values()) + sum(not p.ok for p in self.directions)
            lines.append(
                f"gradcheck ({self.mode}): {self.verdict.upper()}" + (f", {n_fail} failing" if n_fail else "")
            )
        lines += [f"{r.tag} {r}" for r in self.reports.values()]
        lines += [f"{p.tag} {p}" for p in self.directions]
        if self.identity:
            idt = self.identity
            parts = [f"{k} {idt[k]:.9g}" for k in ("vjp", "jvp", "differences") if k in idt]
            tag = "PASS" if idt.get("ok", True) else "FAIL"
            extra = f" ({idt['detail']})" if "detail" in idt else ""
            lines.append(f"{tag} identity <w, J t>: " + ", ".join(parts) + extra)
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------- plain comparison


def rel_error(name, value, reference, tol, floor) -> ParamReport:
    """Norm-wise relative error of ``value`` against ``reference`` (GC1)."""
    g = np.asarray(value, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if g.shape != r.shape:
        raise ValueError(f"{name}: gradient has shape {g.shape} but the reference has shape {r.shape}")
    if g.size == 0:
        return ParamReport(name, g.shape, 0.0, (), 0.0, 0.0, tol)
    diff = np.abs(g - r)
    if not np.isfinite(diff).all():  # a NaN/inf gradient is the worst possible answer
        diff = np.where(np.isfinite(diff), diff, np.inf)
    i = np.unravel_index(int(np.argmax(diff)), g.shape)
    denom = max(float(np.abs(g).max(initial=0.0)), float(np.abs(r).max(initial=0.0)), floor)
    err = float(diff[i] / denom) if np.isfinite(denom) else float("inf")  # (GC1)
    if np.isnan(err):
        err = float("inf")
    return ParamReport(name, g.shape, err, tuple(int(k) for k in i), float(g[i]), float(r[i]), tol)


def compare_grads(
    grads: dict, reference: dict, tol: float, floor: float = 1e-3, keys=None
) -> GradcheckResult:
    """Compare two gradient dicts key by key (``keys`` defaults to the reference's keys)."""
    keys = list(reference) if keys is None else list(keys)
    missing = [k for k in keys if k not in grads]
    if missing:
        raise ValueError(f"gradient dict lacks keys {missing}; it has {sorted(grads)}")
    return GradcheckResult({k: rel_error(k, grads[k], reference[k], tol, floor) for k in keys})


def numerical_grad(f, params: dict, eps: float = 1e-6, keys=None) -> dict:
    """Central-difference gradient (FD) of the scalar ``f(params)`` for each array in ``params``.

    ``f`` receives a dict of copies; one entry is moved by +-eps at a time and restored exactly, so the
    caller's arrays are never changed. Cost: 2 calls of f per scalar parameter. The step is fixed and
    absolute; ``gradcheck`` sizes its steps for the dtype and the scale instead (GC7).
    """
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays; got {type(params).__name__}")
    if not (isinstance(eps, (float, int)) and eps > 0):
        raise ValueError(f"eps must be a positive number; got {eps!r}")
    work = {k: np.array(v, copy=True) for k, v in params.items()}
    for k, v in work.items():
        if v.dtype.kind != "f":
            raise TypeError(f"params[{k!r}] must be a float array; got dtype {v.dtype}")
    keys = list(work) if keys is None else list(keys)
    out = {}
    for k in keys:
        p = work[k]
        g = np.zeros(p.shape, dtype=np.float64)
        flat, gflat = p.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            f_plus = float(f(work))
            flat[i] = old - eps
            f_minus = float(f(work))
            flat[i] = old
            gflat[i] = (f_plus - f_minus) / (2 * eps)  # (FD)
        out[k] = g
    return out


# -------------------------------------------------------------------------------------------- guards


def _readonly_copy(a):
    b = np.array(a, copy=True)
    b.setflags(write=False)
    return b


def _fresh(arrays: dict) -> dict:
    return {k: _readonly_copy(v) for k, v in arrays.items()}


def _is_readonly_error(exc) -> bool:
    return isinstance(exc, ValueError) and "read-only" in str(exc)


def _call(fn, fn_name, args):
    """``fn(*values)`` for ``args = [(label, value), ...]`` whose arrays are read-only.

    numpy refuses a write into a read-only array with ValueError ("assignment destination is read-only");
    that becomes an :class:`InPlaceModificationError` naming the array(s) written, found by calling again
    with one array read-only at a time.
    """
    try:
        return fn(*[v for _, v in args])
    except ValueError as exc:
        if not _is_readonly_error(exc):
            raise
        culprits = _find_writers(fn, args)
        if culprits:
            msg = (
                f"{fn_name} wrote into {', '.join(culprits)}, which the checker passed read-only: it "
                "modifies an input in place. Code that changes its inputs corrupts the caller's arrays (an "
                "upstream gradient another branch still needs, the parameters between calls); copy before "
                f"modifying (x = x.copy()). numpy said: {exc}"
            )
        else:
            msg = (
                f"{fn_name} raised {exc!r} writing into a read-only array that is not one of its arguments "
                f"(the checker passed {', '.join(lbl for lbl, _ in args)} read-only)"
            )
        raise InPlaceModificationError(msg) from exc


def _find_writers(fn, args) -> list:
    """Labels of the arrays in ``args`` that ``fn`` writes into (one read-only at a time, the rest copies)."""
    leaves = []
    for pos, (label, value) in enumerate(args):
        if isinstance(value, dict):
            leaves += [(f"{label}[{k!r}]", pos, k) for k, v in value.items() if isinstance(v, np.ndarray)]
        elif isinstance(value, np.ndarray):
            leaves.append((label, pos, None))
    culprits = []
    for label, pos, key in leaves:
        trial = []
        for p, (_, value) in enumerate(args):
            if isinstance(value, dict):
                trial.append(
                    {
                        k: (_readonly_copy(v) if (p, k) == (pos, key) else np.array(v, copy=True))
                        if isinstance(v, np.ndarray)
                        else v
                        for k, v in value.items()
                    }
                )
            elif isinstance(value, np.ndarray):
                trial.append(_readonly_copy(value) if (p, None) == (pos, key) else np.array(value, copy=True))
            else:
                trial.append(value)
        try:
            fn(*trial)
        except ValueError as exc:
            if _is_readonly_error(exc):
                culprits.append(label)
        except Exception:  # noqa: BLE001 - another error is not a write into this array
            pass
    return culprits


def _scalar(out, fn_name) -> float:
    a = np.asarray(out)
    if a.size != 1 or a.dtype.kind not in "fiu":
        raise TypeError(f"{fn_name} must return a real scalar; got {type(out).__name__} of shape {a.shape}")
    return float(a.reshape(()))


def _eps_of(dtype) -> float:
    return float(np.finfo(dtype).eps)


def _output_eps(values, base_eps) -> float:
    """u of the precision E is really computed in (GC4): float32/16 when every value is exactly one."""
    vals = [v for v in values if math.isfinite(v) and v != 0.0]
    if len(vals) < 3:
        return base_eps
    for dt in (np.float16, np.float32):
        top = float(np.finfo(dt).max)
        if _eps_of(dt) > base_eps and all(abs(v) <= top and float(dt(v)) == v for v in vals):
            return _eps_of(dt)
    return base_eps


def _check_arrays(arrays, what) -> dict:
    if not isinstance(arrays, dict):
        raise TypeError(f"{what} must be a dict of arrays; got {type(arrays).__name__}")
    out = {}
    for k, v in arrays.items():
        a = np.asarray(v)
        if a.dtype.kind != "f":
            raise TypeError(f"{what}[{k!r}] must be a float array; got dtype {a.dtype}")
        out[k] = a
    return out


def _check_grads(grads, params, keys, what="gradient dict") -> dict:
    if not isinstance(grads, dict):
        raise TypeError(f"{what} must be a dict of arrays; got {type(grads).__name__}")
    missing = [k for k in keys if k not in grads]
    if missing:
        raise ValueError(f"{what} lacks keys {missing}; it has {sorted(grads)}")
    out = {}
    for k in keys:
        g = np.asarray(grads[k])
        if g.dtype.kind not in "fiu":
            raise TypeError(f"{what}[{k!r}] must be a float array; got dtype {g.dtype}")
        if g.shape != params[k].shape:
            raise ValueError(
                f"{k}: gradient has shape {g.shape} but the parameter has shape {params[k].shape}"
            )
        out[k] = g.astype(np.float64)
    return out


def _agree(a, b, u) -> bool:
    """Two results of the same call agree to 1e4 units of roundoff (rounding noise, not randomness)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    scale = float(np.nanmax(np.abs(a), initial=0.0))
    diff = np.abs(a - b)
    return bool(np.all((diff <= 1e4 * u * scale) | (np.isnan(a) & np.isnan(b)) | (a == b)))


# ---------------------------------------------------------------------------------------- the engine


class _Space:
    """The arrays under test at the point theta: originals, float64 copies, read-only copies, scales (GC3)."""

    def __init__(self, arrays: dict, keys: list):
        self.arrays = arrays
        self.keys = keys
        self.frozen = _fresh(arrays)
        self.x64 = {k: arrays[k].astype(np.float64) for k in keys}
        rms = {k: float(np.sqrt(np.mean(self.x64[k] ** 2))) if self.x64[k].size else 0.0 for k in keys}
        flat = np.concatenate([self.x64[k].ravel() for k in keys]) if keys else np.zeros(0)
        overall = float(np.sqrt(np.mean(flat**2))) if flat.size else 0.0
        fallback = overall if overall > 0 and math.isfinite(overall) else 1.0
        self.scale = {k: (s if s > 0 and math.isfinite(s) else fallback) for k, s in rms.items()}
        self.u = max((_eps_of(arrays[k].dtype) for k in keys), default=_eps_of(np.float64))

    def direction(self, rng, keys, mask=None) -> dict:
        """v_i = z_i s_k with z Gaussian (GC3), over ``keys`` only; ``mask[k]`` True entries are left at 0."""
        v = {}
        for k in keys:
            z = rng.standard_normal(self.x64[k].shape) * self.scale[k]
            if mask is not None and k in mask:
                z[mask[k]] = 0.0
            v[k] = z
        return v

    def moved(self, v: dict, h: float):
        """(read-only arrays at theta + h v in their dtypes, actual moves Delta in float64) (GC3)."""
        point, delta = dict(self.frozen), {}
        for k, vk in v.items():
            new = (self.x64[k] + h * vk).astype(self.arrays[k].dtype)
            delta[k] = new.astype(np.float64) - self.x64[k]
            new.setflags(write=False)
            point[k] = new
        return point, delta


def _fit_order(hs, rs) -> float:
    """Least-squares slope of log r against log h (GC5)."""
    x, y = np.log(np.asarray(hs)), np.log(np.asarray(rs))
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def _norm(vec) -> float:
    return float(np.sqrt(np.sum(vec * vec)))


def _clear_first_order(hs, vp, vm, fp, fm) -> bool:
    """The last WINDOW + 1 steps show a clean first-order odd part far above the floor, and an even part that
    is small and, where resolved, O(h^2) (the steps are asymptotic): going lower cannot change a "fail" (the
    first-order term only dominates more), so the descent stops."""
    last = range(len(hs) - WINDOW - 1, len(hs))
    if last.start < 0 or any(vp[i] is None or vm[i] is None for i in last):
        return False
    S = [0.5 * _norm(vp[i] - vm[i]) for i in last]
    E = [0.5 * _norm(vp[i] + vm[i]) for i in last]
    if any(
        S[j] < 10.0 * MARGIN * (fp[i] + fm[i]) or S[j] < 10.0 * ODD_DOMINANT * E[j]
        for j, i in enumerate(last)
    ):
        return False
    steps = list(last)
    for j, i in enumerate(steps[:-1]):
        ratio = math.log(hs[i] / hs[i + 1])
        if not 0.8 <= math.log(S[j] / S[j + 1]) / ratio <= 1.2:  # S falls as h
            return False
        lo, hi = E[j] >= MARGIN * (fp[i] + fm[i]), E[j + 1] >= MARGIN * (fp[i + 1] + fm[i + 1])
        if lo and hi and not 1.5 <= math.log(E[j] / E[j + 1]) / ratio <= 2.5:  # E is not yet O(h^2)
            return False
    return True


def _first_order_share(hs, vp, vm, win) -> float:
    """||alpha|| / ||gamma|| from least-squares fits E(h) = alpha h + beta h^2 and S(h) = gamma h + zeta h^3
    over the window (GC6): a kink crossed at h_k > 0 adds Delta_s (h - h_k) to one side only, a first-order
    term in the even part as large as the one in the odd part; a smooth function's even part has none."""
    if len(win) < 3:
        return 0.0
    h = np.array([hs[i] for i in win]) / hs[win[0]]
    E = np.array([0.5 * (vp[i] + vm[i]) for i in win])
    S = np.array([0.5 * (vp[i] - vm[i]) for i in win])
    alpha = np.linalg.lstsq(np.stack([h, h * h], 1), E, rcond=None)[0][0]
    gamma = np.linalg.lstsq(np.stack([h, h**3], 1), S, rcond=None)[0][0]
    return _norm(alpha) / max(_norm(gamma), 1e-300)


def _even_keeps_up(hs, vp, vm, steps, both) -> bool:
    """At the small-h end the even part is as large as the odd part and does not fall behind it (GC6).

    For a smooth function |E| / |S| = h |v^T H v| / 2 |delta| shrinks tenfold per step; a kink crossed
    adds Delta_s (h - h_k) to one side, an even and an odd part of the same size, so |E| / |S| stays ~1.
    """
    for i in steps:
        if i - 1 not in both or i not in both:
            continue
        ratio = [0.5 * _norm(vp[j] + vm[j]) / max(0.5 * _norm(vp[j] - vm[j]), 1e-300) for j in (i - 1, i)]
        if ratio[1] >= KINK_SHARE and ratio[1] >= 0.2 * ratio[0]:  # smooth: 0.1 (a tenth per step)
            return True
    return False


def _taylor_probe(R, label, u, noise, analytic=float("nan"), size=0.0) -> TaylorProbe:
    """The Taylor test along one direction: steps (GC3), floors (GC4), orders (GC5), verdict (GC6).

    ``R(h) -> (signed remainder vector, magnitude of the function's value, size of the change of f)``;
    ``u`` the unit roundoff, ``noise`` the measured rounding noise n_emp. When f barely responds to the
    largest step (parameters far smaller than the scale f varies on: weights of 1e-6 under a loss of order
    1), the steps grow tenfold until it does (GC3); the grown descent decides only if it passes, or fails
    cleanly (a first-order odd part beside an O(h^2) even part, no kink); otherwise the verdict at h_max
    stands.
    """
    cache = {}

    def at(h):
        if h not in cache:
            cache[h] = R(h)
        return cache[h]

    probe, clean, change0, floor0 = _descend_and_judge(at, label, u, noise, H_MAX, analytic, size)
    target = GROW * floor0
    if (
        probe.verdict not in ("rounding", "unresolved")
        or change0 >= target
        or target > GROW_REL * at(H_MAX)[1]
    ):
        return probe  # resolved, or the response needed would not be small next to f (float32: never grow)
    h_top = H_MAX
    while True:  # (GC3) grow the top step until f responds by GROW floors
        if h_top * 10.0 > H_CAP:
            return probe  # f does not respond within H_CAP: nothing more to learn
        vec, mag, change = at(10.0 * h_top)
        if not np.all(np.isfinite(vec)):
            return probe
        h_top *= 10.0
        if change >= target:
            break
    chosen, passed = None, None
    top = h_top
    while top > H_MAX * 1.5:  # each grown top, the largest first (evaluations are cached)
        grown, clean, _, _ = _descend_and_judge(at, label, u, noise, top, analytic, size)
        if grown.verdict == "fail" and clean:
            chosen = (grown, top)  # a clean failure from a smaller top is the more asymptotic one
        elif grown.verdict in ("pass", "rounding") and passed is None:
            passed = (grown, top)
        top /= 10.0
    chosen = chosen or passed
    if chosen is None:
        return probe
    grown, top = chosen
    grown.detail = (grown.detail + "; " if grown.detail else "") + (
        f"steps grown to {top:g} of the parameters' scale: f barely responds to {H_MAX:g}"
    )
    return grown


def _descend_and_judge(at, label, u, noise, h_top, analytic, size):
    """One descent from ``h_top``: (probe, whether a "fail" is clean, change of f at h_top, its floor)."""
    hs, vp, vm, rp, rm, fp, fm, ch, change0 = [], [], [], [], [], [], [], [], None
    below, h = 0, h_top
    while h >= 4.0 * u and len(hs) < MAX_STEPS:  # (GC3) descend to the noise floor
        pv, pmag, change = at(h)
        mv, mmag, _ = at(-h)
        if change0 is None:
            change0 = change
        hs.append(h)
        ch.append(change)
        vp.append(pv if np.all(np.isfinite(pv)) else None)
        vm.append(mv if np.all(np.isfinite(mv)) else None)
        rp.append(_norm(pv) if vp[-1] is not None else float("nan"))
        rm.append(_norm(mv) if vm[-1] is not None else float("nan"))
        fp.append(KAPPA * max(u * pmag, noise))  # (GC4)
        fm.append(KAPPA * max(u * mmag, noise))
        if vp[-1] is not None and vm[-1] is not None:
            below = below + 1 if (rp[-1] < fp[-1] and rm[-1] < fm[-1]) else 0
            if below >= 2 or _clear_first_order(hs, vp, vm, fp, fm):
                break
        h *= H_RATIO
    change0 = change0 if change0 is not None and math.isfinite(change0) else 0.0
    n = len(hs)
    both = [i for i in range(n) if vp[i] is not None and vm[i] is not None]
    if not both:
        return (
            TaylorProbe(
                label,
                "undefined",
                None,
                hs,
                rp,
                fp,
                analytic=analytic,
                detail="the function is not finite at the steps taken near the point",
            ),
            False,
            change0,
            fp[0],
        )
    J = [_norm(vp[i] + vm[i]) if i in both else 0.0 for i in range(n)]  # 2 |E(h)| (GC5)
    S = [0.5 * _norm(vp[i] - vm[i]) if i in both else 0.0 for i in range(n)]  # |S(h)| (GC5)
    Jfl = [fp[i] + fm[i] for i in range(n)]
    Sfl = [0.5 * x for x in Jfl]
    # the bound the odd part puts on a first-order error, relative to the gradient's own first-order term:
    # |delta| <= max(|S(h)|, floor) / h at every step, against ||g . v||_2
    bounds = [max(S[i], Sfl[i]) / (hs[i] * size) for i in both] if size > 0 else []
    resolution = min(bounds, default=math.inf)
    win = [i for i in both if rp[i] >= MARGIN * fp[i] or rm[i] >= MARGIN * fm[i]][-WINDOW:]  # (GC5)
    if not win:
        flat = size == 0 and all(ch[i] < fp[i] for i in both)  # f does not move and g is zero along v
        if resolution <= PASS_RESOLUTION or flat:
            return (
                TaylorProbe(
                    label,
                    "rounding",
                    None,
                    hs,
                    rp,
                    fp,
                    analytic=analytic,
                    numeric=analytic,
                    detail="f does not change and the gradient is zero along v"
                    if flat
                    else f"the directional derivative is right to {resolution:.0e} of ||g . v||",
                ),
                False,
                change0,
                fp[0],
            )
        what = (
            "does not change"
            if not change0
            else f"changes by only {change0 / fp[0] * KAPPA:.2g} times its rounding noise"
        )
        return (
            TaylorProbe(
                label,
                "unresolved",
                None,
                hs,
                rp,
                fp,
                analytic=analytic,
                numeric=analytic,
                detail=f"f {what} under a move of {h_top:g} of the parameters' scale: an error "
                "smaller than that change is invisible at this precision",
            ),
            False,
            change0,
            fp[0],
        )

    def order(vals, floors):
        keep = [i for i in win if vals[i] >= floors[i] and vals[i] > 0]
        fit = _fit_order([hs[i] for i in keep], [vals[i] for i in keep]) if len(keep) >= 2 else None
        return fit, len(keep)

    (p, _), (s, n_s), (q, n_j) = order(rp, fp), order(S, Sfl), order(J, Jfl)
    ratios = [S[i] / max(0.5 * J[i], Sfl[i]) for i in win]  # odd part / even part
    rho = float(np.median(ratios))
    i0 = win[-1]
    numeric = analytic + float(np.sum(vp[i0] - vm[i0])) / (2 * hs[i0])  # the central difference
    kw = dict(window=(hs[win[-1]], hs[win[0]]), kink_order=q, odd_order=s, analytic=analytic, numeric=numeric)
    kw["bound"] = resolution
    odd_first = s is not None and ODD_MIN <= s < ODD_MAX  # (GC6) S falls as h: the gradient is off
    odd_mixed = s is not None and ODD_MAX <= s < 2.0  # between h (wrong) and h^3 (right): undecided
    even_kink = q is not None and q < ORDER_PASS  # (GC6) E falls as h: the one-sided slopes differ
    crossing = q is not None and q > CROSS_ORDER  # (GC6) (not p: r dips where S and E cancel)
    if i0 + 1 < n and i0 + 1 in both:
        big, nxt = max(rp[i0], rm[i0]), max(rp[i0 + 1], rm[i0 + 1], 1e-300)
        crossing = crossing or big / nxt > (hs[i0] / hs[i0 + 1]) ** CROSS_ORDER
    clean = False
    if odd_first:
        even_first = _first_order_share(hs, vp, vm, win) >= KINK_SHARE  # a one-sided kink crossed (GC6)
        last = max(i for i in both if rp[i] >= fp[i] or rm[i] >= fm[i])  # the smallest step resolved at all
        even_first = even_first or _even_keeps_up(hs, vp, vm, sorted({i0, last}), both)
        verdict = "kink" if (even_kink and rho < ODD_DOMINANT) or crossing or even_first else "fail"
        two_steps_enough = (
            n_s == 2 and abs(s - 1.0) <= ODD_TIGHT and min(ratios) >= ODD_DOMINANT and not even_kink
        )
        if verdict == "fail" and n_s < WINDOW and not two_steps_enough:
            verdict = "unresolved"
            kw["detail"] = (
                f"the odd part falls as h^{s:.2f} over only {n_s} steps above the noise floor: suspicious, "
                "but too few steps to decide (check in float64)"
            )
        clean = verdict == "fail" and (n_j < 2 or 1.5 <= q <= CROSS_ORDER)
    elif odd_mixed and not even_kink:
        verdict = "unresolved"
        kw["detail"] = (
            f"the odd part falls as h^{s:.2f}, between a first-order error (h) and a right gradient "
            "(h^3): the steps the precision allows are not asymptotic here"
        )
    elif rho >= ODD_DOMINANT and s is None:  # the odd part dominates but is resolved at one step only
        if p is None:
            verdict = "unresolved"
            kw["detail"] = "only one step resolved above the noise floor: no order to fit"
        else:
            verdict = "pass" if p >= ORDER_PASS else ("kink" if even_kink else "fail")
    elif even_kink:
        verdict = "kink"
    else:  # the odd part is O(h^3) or below the floor and E is smooth along v
        verdict = "pass"
    if verdict == "pass" and resolution > PASS_RESOLUTION:
        verdict = "unresolved"
        kw["detail"] = (
            f"no first-order error shows, but the odd part bounds one only to {resolution:.0e} of "
            "||g . v|| (too little signal above the rounding noise; check in float64)"
        )
    return TaylorProbe(label, verdict, p, hs, rp, fp, **kw), clean, change0, fp[0]


class _Scalar:
    """A scalar function E of the arrays (gradcheck's f, or F = <w, f> for a VJP, GC8) and its gradient."""

    def __init__(self, fn, fn_name, space: _Space, grads64: dict):
        self.fn, self.fn_name, self.space, self.g = fn, fn_name, space, grads64
        self.values = []  # f's first values: they tell the precision E is computed in (GC4)

    def _record(self, values):
        if len(self.values) < 16:
            self.values.extend(values)

    def value(self, point) -> tuple:
        """(E, magnitude of E for the noise floor)."""
        e = _scalar(_call(self.fn, self.fn_name, [("params", point)]), self.fn_name)
        self._record([e])
        return e, abs(e)

    def remainder(self, v, e0):
        """R(h) of GC2, with the actual move Delta: E(theta + Delta) - E(theta) - <g, Delta>."""

        def R(h):
            point, delta = self.space.moved(v, h)
            e, mag = self.value(point)
            lin = sum(float(np.sum(self.g[k] * delta[k])) for k in delta)
            return np.array([e - e0 - lin]), max(mag, abs(e0)), abs(e - e0)

        return R

    def size(self, v) -> float:
        """||g . v||_2 = sqrt(sum_i (g_i v_i)^2): the size of the first-order change per unit step that a
        relative error rho in every entry of g would shift by about rho (the scale of "a 1% error")."""
        return float(np.sqrt(sum(np.sum((self.g[k] * v[k]) ** 2) for k in v)))

    def analytic(self, v) -> float:
        return float(sum(np.sum(self.g[k] * v[k]) for k in v))


class _VJPScalar(_Scalar):
    """F(x) = <w, f(x)> (GC8): its gradient is vjp(w)."""

    def __init__(self, fn, fn_name, space, grads64, upstream):
        super().__init__(fn, fn_name, space, grads64)
        self.w64 = np.asarray(upstream, dtype=np.float64)

    def value(self, point):
        y = np.asarray(_call(self.fn, self.fn_name, [("inputs", point)]), dtype=np.float64)
        if y.shape != self.w64.shape:
            raise ValueError(
                f"{self.fn_name} returned shape {y.shape} at a moved point but {self.w64.shape} at x"
            )
        terms = self.w64 * y
        self._record([float(x) for x in y.ravel()[:4]])
        return float(np.sum(terms)), float(np.sum(np.abs(terms)))


def _measure_noise(R, u) -> float:
    """n_emp (GC4): half the second difference at moves of a few units of roundoff (the gradient cancels).

    If f does not change at all under these probes (it is a small difference of large terms, so its values
    come in quanta far coarser than u |f|), the probe moves grow fourfold until f registers a change on both
    sides; the smaller of the two changes, about one quantum, is then a floor for the noise.
    """
    worst, registered = 0.0, False
    for k in PROBES:
        plus, minus = R(k * u), R(-k * u)
        vec = plus[0] + minus[0]
        if np.all(np.isfinite(vec)):
            worst = max(worst, 0.5 * _norm(vec))
        registered = registered or plus[2] > 0 or minus[2] > 0  # f moved at all
    k = 4.0 * PROBES[-1]
    while not registered and k * u <= QUANTUM_MAX_MOVE:
        plus, minus = R(k * u), R(-k * u)
        if plus[2] > 0 and minus[2] > 0 and math.isfinite(plus[2]) and math.isfinite(minus[2]):
            worst = max(worst, min(plus[2], minus[2]))
            registered = True
        k *= 4.0
    return worst


def _central_differences(scalar: _Scalar, key, e0, u, eps=None):
    """(GC7) per element of ``key``: (central differences, kink flags from one-sided differences)."""
    space = scalar.space
    base = np.array(space.arrays[key], copy=True)
    x64 = space.x64[key].reshape(-1)
    flat = base.reshape(-1)
    view = base.view()
    view.setflags(write=False)  # f reads the moving array through a read-only view
    point = dict(space.frozen)
    point[key] = view
    step = (
        u ** (1.0 / 3.0) * np.maximum(np.abs(x64), space.scale[key])
        if eps is None
        else np.full(x64.shape, eps)
    )
    num, dplus, dminus = np.zeros(base.size), np.zeros(base.size), np.zeros(base.size)
    for i in range(base.size):
        old, x = flat[i], float(x64[i])
        flat[i] = x + step[i]
        d_plus = float(flat[i]) - x
        f_plus, _ = scalar.value(point)
        flat[i] = x - step[i]
        d_minus = float(flat[i]) - x
        f_minus, _ = scalar.value(point)
        flat[i] = old
        if d_plus == d_minus:
            num[i] = float("nan")
            continue
        num[i] = (f_plus - f_minus) / (d_plus - d_minus)  # (GC7)
        dplus[i] = (f_plus - e0) / d_plus if d_plus else num[i]
        dminus[i] = (e0 - f_minus) / (-d_minus) if d_minus else num[i]
    jump = np.abs(dplus - dminus)
    scale = 0.1 * float(np.nanmax(np.abs(num), initial=0.0))
    kinks = (jump > 0.5 * np.maximum(np.abs(dplus) + np.abs(dminus), scale)) & (jump > 0)  # (GC6)
    return num.reshape(base.shape), kinks.reshape(base.shape)


def _default_tol(u) -> float:
    """Allowance on the central-difference error (GC1, GC7): 1e-6 in float64, 1e-2 in float32."""
    return max(1e-6, 400.0 * u ** (2.0 / 3.0))


@dataclass
class _Options:
    fast: bool
    n_directions: int
    eps: float | None
    tol: float | None
    floor: float | None
    verdict: str
    on_kink: object


def _positive(x) -> bool:
    return isinstance(x, (float, int)) and not isinstance(x, bool) and x > 0


def _options(eps, tol, floor, fast, n_directions, verdict, on_kink, max_redraws, seed) -> _Options:
    if eps is not None and not _positive(eps):
        raise ValueError(f"eps must be a positive number or None; got {eps!r}")
    if tol is not None and not _positive(tol):
        raise ValueError(f"tol must be a positive number or None; got {tol!r}")
    if floor is not None and not (_positive(floor) or floor == 0):
        raise ValueError(f"floor must be a non-negative number or None; got {floor!r}")
    if not isinstance(fast, bool):
        raise TypeError(f"fast must be True or False; got {fast!r}")
    if not (isinstance(n_directions, int) and not isinstance(n_directions, bool) and n_directions >= 1):
        raise ValueError(f"n_directions must be a positive integer; got {n_directions!r}")
    if verdict not in ("taylor", "fd", "both"):
        raise ValueError(f"verdict must be 'taylor', 'fd' or 'both'; got {verdict!r}")
    if fast and verdict != "taylor":
        raise ValueError(
            f"fast=True takes no central differences, so verdict must be 'taylor'; got {verdict!r}"
        )
    if not (on_kink in ("report", "skip") or callable(on_kink)):
        raise ValueError(f"on_kink must be 'report', 'skip' or a callable redraw(attempt); got {on_kink!r}")
    if not (isinstance(max_redraws, int) and not isinstance(max_redraws, bool) and max_redraws >= 0):
        raise ValueError(f"max_redraws must be a non-negative integer; got {max_redraws!r}")
    if seed is not None and not isinstance(seed, (int, np.random.Generator)):
        raise TypeError(f"seed must be an int, a numpy Generator or None; got {type(seed).__name__}")
    return _Options(fast, n_directions, eps, tol, floor, verdict, on_kink)


def _start(scalar: _Scalar, rng):
    """E(theta) twice (determinism), the effective roundoff u and the noise n_emp (GC4)."""
    space = scalar.space
    e0, _ = scalar.value(space.frozen)
    e0b, _ = scalar.value(_fresh(space.arrays))
    if not math.isfinite(e0):
        raise ValueError(f"{scalar.fn_name} is {e0} at the given point: nothing to check")
    if not _agree(e0, e0b, space.u):
        raise NondeterministicError(
            f"{scalar.fn_name} is not deterministic: two calls at the same point returned {e0!r} and "
            f"{e0b!r}; fix its random seed (dropout masks, sampling) before checking"
        )
    R = scalar.remainder(space.direction(rng, space.keys), e0)
    R(1e-3)
    u = _output_eps(scalar.values, space.u)
    noise = max(_measure_noise(R, u), abs(e0 - e0b))
    notes = []
    if u > space.u:
        notes.append(
            f"{scalar.fn_name} returns float32 values (u = {u:.1e}): steps and floors sized for that"
        )
    return e0, u, noise, notes


def _run_scalar(scalar: _Scalar, opts: _Options, rng):
    """Full mode: one probe per array, central differences per element. Fast: a few random directions."""
    e0, u, noise, notes = _start(scalar, rng)
    space, keys = scalar.space, scalar.space.keys
    tol = opts.tol if opts.tol is not None else _default_tol(u)
    reports, directions = {}, []

    def probe(k, mask=None, v=None):
        v = space.direction(rng, [k], mask) if v is None else v
        return _taylor_probe(scalar.remainder(v, e0), k, u, noise, scalar.analytic(v), scalar.size(v))

    def nonfinite_report(k):
        bad = np.argwhere(~np.isfinite(scalar.g[k]))
        idx = tuple(int(i) for i in bad[0])
        return ParamReport(
            k,
            space.arrays[k].shape,
            float("inf"),
            idx,
            float(scalar.g[k][idx]),
            float("nan"),
            tol,
            verdict="fail",
            source="the gradient is not finite",
        )

    finite = {k: bool(np.all(np.isfinite(scalar.g[k]))) for k in keys}
    if opts.fast:
        vs = []
        for j in range(opts.n_directions):
            vs.append(space.direction(rng, keys))
            directions.append(
                _taylor_probe(
                    scalar.remainder(vs[-1], e0),
                    f"random direction {j + 1}",
                    u,
                    noise,
                    analytic=scalar.analytic(vs[-1]),
                    size=scalar.size(vs[-1]),
                )
            )
        failed = [v for v, p in zip(vs, directions) if p.verdict == "fail"]
        for p in directions:
            if p.verdict == "kink" and opts.on_kink == "skip":
                p.verdict, p.detail = "skipped", "crossed a kink: left out of the verdict"
        if any(p.verdict in ("fail", "kink", "undefined") for p in directions) or not all(finite.values()):
            for k in keys:  # localise: one probe per array (cost: the number of arrays, not of parameters)
                if not finite[k]:
                    reports[k] = nonfinite_report(k)
                    continue
                # the failing direction's own share in array k first (it carries the error), then a fresh one
                t = probe(k, v={k: failed[0][k]}) if failed else probe(k)
                if failed and t.verdict not in ("fail", "kink"):
                    t2 = probe(k)
                    t = t2 if t2.verdict in ("fail", "kink") else t
                g, num = t.analytic, t.numeric
                err = abs(g - num) / max(abs(g), abs(num), 1e-300) if math.isfinite(num) else float("nan")
                reports[k] = ParamReport(
                    k,
                    space.arrays[k].shape,
                    err,
                    (),
                    g,
                    num,
                    tol,
                    verdict=t.verdict,
                    order=t.order,
                    taylor=t,
                    source="directional derivative along the array's random direction",
                )
            if all(r.ok for r in reports.values()):  # no array confirms: a mixture the steps cannot resolve
                for p in directions:
                    if p.verdict == "fail":
                        p.verdict = "unresolved"
                        p.detail = (p.detail + "; " if p.detail else "") + "no single array confirms it"
        return reports, directions, notes

    pending = {}
    for k in keys:
        if not finite[k]:
            reports[k] = nonfinite_report(k)
            continue
        t = probe(k)
        num, kinks = _central_differences(scalar, k, e0, u, opts.eps)
        pending[k] = (t, num, kinks)
    if opts.floor is not None:
        floor = opts.floor
    else:  # (GC1) relative to the largest gradient of any array: the error is then free of scale
        big = [
            float(np.nanmax(np.abs(x), initial=0.0))
            for k, (_, num, _) in pending.items()
            for x in (scalar.g[k], num)
        ]
        floor = 1e-3 * max(big, default=0.0) or 1e-300
    for k in keys:
        if k not in pending:
            continue
        t, num, kinks = pending[k]
        rep = rel_error(k, scalar.g[k], num, tol, floor)
        kink_idx = [tuple(int(i) for i in ix) for ix in np.argwhere(kinks)]
        if rep.error > tol and t.verdict in ("pass", "rounding", "unresolved"):
            # central differences disagree where the random direction saw nothing: a random direction can be
            # nearly orthogonal to the error, so probe along the discrepancy g - num itself (GC6)
            d = np.nan_to_num(scalar.g[k] - num)
            rms = float(np.sqrt(np.mean(d * d)))
            if rms > 0:
                t2 = probe(k, v={k: d / rms * space.scale[k]})
                t2.label = f"{k} (along the central differences' discrepancy)"
                if t2.verdict in ("fail", "kink"):
                    t = t2
        verdict = t.verdict
        if verdict == "kink" and opts.on_kink == "skip":
            if kink_idx and len(kink_idx) < kinks.size:  # check the rest of the array, kinks left out
                t = probe(k, {k: kinks})
                t.detail = (
                    t.detail + "; " if t.detail else ""
                ) + f"{len(kink_idx)} element(s) at a kink left out"
                verdict = t.verdict
            if verdict == "kink":
                verdict = "skipped"
        fd_ok = rep.error <= tol
        if opts.verdict == "fd":
            verdict = "pass" if fd_ok else "fail"
        elif opts.verdict == "both" and not fd_ok and verdict in ("pass", "rounding"):
            verdict = "fail"
        rep.verdict, rep.order, rep.taylor, rep.kink_elements = verdict, t.order, t, kink_idx
        reports[k] = rep
    return reports, directions, notes


def _dtype_notes(arrays, keys, what) -> list:
    low = {k: str(arrays[k].dtype) for k in keys if arrays[k].dtype != np.float64}
    if not low:
        return []
    u = max(_eps_of(arrays[k].dtype) for k in low)
    return [
        f"{what} {sorted(low)} are not float64 ({', '.join(f'{k}: {d}' for k, d in low.items())}): "
        f"checked in their own precision, with steps and a noise floor sized for it (u = {u:.1e}); the "
        f"Taylor test resolves errors down to ~{(KAPPA * u) ** (2 / 3):.0e} of a directional derivative "
        "there (cast to float64 for a sharper check)"
    ]


def _rng(seed):
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _grads_at(grads, params, keys, u) -> dict:
    """The gradient under test: a dict, or ``grads(params)`` called twice with read-only params."""
    if not callable(grads):
        return _check_grads(grads, params, keys)
    g1 = _check_grads(_call(grads, "grads", [("params", _fresh(params))]), params, keys, "grads(params)")
    g2 = _check_grads(_call(grads, "grads", [("params", _fresh(params))]), params, keys, "grads(params)")
    for k in keys:
        if not _agree(g1[k], g2[k], u):
            raise NondeterministicError(
                f"grads is not deterministic: two calls at the same params disagree in {k!r}; fix its random "
                "seed (dropout masks, sampling) before checking"
            )
    return g1


def gradcheck(
    f,
    params: dict,
    grads,
    eps: float | None = None,
    tol: float | None = None,
    floor: float | None = None,
    keys=None,
    *,
    fast: bool = False,
    n_directions: int = 3,
    seed=0,
    verdict: str = "taylor",
    on_kink="report",
    max_redraws: int = 3,
) -> GradcheckResult:
    """Check ``grads`` (e.g. from your own backward pass) against the scalar ``f`` it claims to differentiate.

    The verdict is the Taylor-remainder test (GC2-GC6): along a direction v the remainder
    f(theta + h v) - f(theta) - h <g, v> must fall as h^2 (its odd part as h^3); a wrong gradient makes it
    fall as h. The steps are chosen from the dtype and the scale of ``params`` (GC3, GC4): the same
    defaults work in float32 and float64 and for weights of any scale. Where f is not differentiable (a
    relu at its kink) the report says "not differentiable here", not a failure (GC6).

    Parameters
    ----------
    f : callable
        ``f(params) -> float``. It receives read-only arrays: a write into one raises
        :class:`InPlaceModificationError` naming it. It is called twice at the point and must agree with
        itself (:class:`NondeterministicError` otherwise).
    params : dict of str -> float ndarray
        The point. Never modified. Arrays that are not float64 are checked in their own precision (steps
        and noise floor sized for it), with a RuntimeWarning naming them.
    grads : dict of str -> ndarray, or callable ``grads(params) -> dict``
        The gradient under test, keyed like ``params`` (extra keys are ignored). A callable is called twice
        with read-only params: it must not write into them and must agree with itself.
    eps : float, optional
        Absolute step of the per-element central differences; default: sized per element (GC7).
    tol : float, optional
        Allowance on the central-difference error (GC1), reported beside the Taylor verdict; it decides
        only with ``verdict="fd"`` or ``"both"``. Default 1e-6 in float64, 1e-2 in float32.
    floor : float, optional
        Denominator floor of GC1; default 1e-3 times the largest gradient entry of any array.
    keys : list of str, optional
        The parameters to check (default: all of ``params``).
    fast : bool
        False (full mode): one random direction per parameter array (names the array that fails) and
        central differences per element (name the worst element, both values and the error there). True:
        ``n_directions`` random directions over all parameters, a cost independent of the number of
        parameters; only if one fails (or meets a kink) is each array probed, to name it.
    seed : int, numpy Generator or None
        For the random directions (default 0: the same directions at every call).
    verdict : "taylor" | "fd" | "both"
        What decides: the Taylor test (default), the central-difference error against ``tol`` (the first
        version's rule), or both (fail if either fails). ``fast=True`` needs "taylor".
    on_kink : "report" | "skip" | callable
        At a kink: "report" it (not a failure); "skip" the elements found on a kink (their one-sided
        differences disagree) and check the rest of the array (fast mode: leave the direction out); or a
        callable ``redraw(attempt) -> (params, grads)`` giving a new point, tried up to ``max_redraws``
        times.

    Returns
    -------
    GradcheckResult
        ``ok`` is False when any parameter fails; ``str(result)`` gives, per parameter, the verdict, the
        fitted orders, the worst element, both values there, the error and the allowance.
    """
    if not callable(f):
        raise TypeError(f"f must be callable; got {type(f).__name__}")
    params = _check_arrays(params, "params")
    opts = _options(eps, tol, floor, fast, n_directions, verdict, on_kink, max_redraws, seed)
    keys = list(params) if keys is None else list(keys)
    unknown = [k for k in keys if k not in params]
    if unknown:
        raise ValueError(f"keys {unknown} are not in params, which has {sorted(params)}")
    if not callable(grads):
        _check_grads(grads, params, keys)
    notes = _dtype_notes(params, keys, "parameters")
    if notes:
        warnings.warn("gradcheck: " + notes[0], RuntimeWarning, stacklevel=2)
    rng = _rng(seed)
    for attempt in range(max_redraws + 1):
        space = _Space(params, keys)
        scalar = _Scalar(f, "f", space, _grads_at(grads, params, keys, space.u))
        reports, directions, more = _run_scalar(scalar, opts, rng)
        result = GradcheckResult(reports, directions, notes + more, mode="fast" if fast else "full")
        if not (callable(on_kink) and result.kinks and attempt < max_redraws):
            return result
        new = on_kink(attempt + 1)
        if not (isinstance(new, tuple) and len(new) == 2):
            raise TypeError(f"on_kink must return (params, grads); got {type(new).__name__}")
        notes = notes + [
            f"redraw {attempt + 1}: not differentiable at the previous point ({', '.join(result.kinks)})"
        ]
        params, grads = _check_arrays(new[0], "redrawn params"), new[1]
        lost = [k for k in keys if k not in params]
        if lost:
            raise ValueError(f"on_kink's redrawn params lack keys {lost}")
    return result  # pragma: no cover - the loop returns


def assert_gradients_match(f, params: dict, grads, **kwargs) -> GradcheckResult:
    """``gradcheck`` for tests: raises AssertionError with the full report when the check fails."""
    result = gradcheck(f, params, grads, **kwargs)
    if not result.ok:
        raise AssertionError("gradients do not match f:\n" + str(result))
    return result


# ------------------------------------------------------------------------------------- vector-valued


def _vector_output(out, fn_name) -> np.ndarray:
    y = np.asarray(out)
    if y.dtype.kind not in "fiu":
        raise TypeError(f"{fn_name} must return a float array; got dtype {y.dtype}")
    return y


def vjpcheck(
    f,
    inputs: dict,
    vjp_fn,
    *,
    jvp_fn=None,
    fast: bool = False,
    n_directions: int = 3,
    seed=0,
    eps: float | None = None,
    tol: float | None = None,
    on_kink="report",
) -> GradcheckResult:
    """Check a vector-Jacobian product ``vjp_fn(inputs, u) -> dict`` against ``f(inputs) -> ndarray``.

    A random Gaussian upstream vector w (shaped like f's output) turns the VJP into the gradient of
    F(x) = <w, f(x)> (GC8), which ``gradcheck``'s Taylor test then checks: per input array with central
    differences per element in full mode, along ``n_directions`` random directions with ``fast=True``.
    ``inputs`` and w reach ``f`` and ``vjp_fn`` read-only: a backward pass that writes into its upstream
    gradient raises :class:`InPlaceModificationError` naming ``u``. With ``jvp_fn`` also given, the identity
    <vjp(w), t> = <w, jvp(t)> (GC10) is checked as well.
    """
    return _vector_check("vjp", f, inputs, vjp_fn, jvp_fn, fast, n_directions, seed, eps, tol, on_kink)


def jvpcheck(
    f,
    inputs: dict,
    jvp_fn,
    *,
    vjp_fn=None,
    fast: bool = False,
    n_directions: int = 3,
    seed=0,
    eps: float | None = None,
    tol: float | None = None,
    on_kink="report",
) -> GradcheckResult:
    """Check a Jacobian-vector product ``jvp_fn(inputs, tangents) -> ndarray`` against ``f(inputs)``.

    For each tangent t (Gaussian, one per input array in full mode, ``n_directions`` over all inputs with
    ``fast=True``) the vector remainder f(x + h t) - f(x) - h jvp(t) must fall as h^2 (GC9). Each report
    names the output element where jvp(t) and central differences of f along t disagree most. With
    ``vjp_fn`` also given, the identity <vjp(w), t> = <w, jvp(t)> (GC10) is checked as well.
    """
    return _vector_check("jvp", f, inputs, vjp_fn, jvp_fn, fast, n_directions, seed, eps, tol, on_kink)


def _vector_check(kind, f, inputs, vjp_fn, jvp_fn, fast, n_directions, seed, eps, tol, on_kink):
    if not callable(f):
        raise TypeError(f"f must be callable; got {type(f).__name__}")
    for name, fn, needed in (("vjp_fn", vjp_fn, kind == "vjp"), ("jvp_fn", jvp_fn, kind == "jvp")):
        if (needed or fn is not None) and not callable(fn):
            raise TypeError(f"{name} must be callable{'' if needed else ' or None'}; got {type(fn).__name__}")
    inputs = _check_arrays(inputs, "inputs")
    if on_kink not in ("report", "skip"):
        raise ValueError(f"on_kink must be 'report' or 'skip' for {kind}check; got {on_kink!r}")
    opts = _options(eps, tol, None, fast, n_directions, "taylor", on_kink, 0, seed)
    keys = list(inputs)
    notes = _dtype_notes(inputs, keys, "inputs")
    if notes:
        warnings.warn(f"{kind}check: " + notes[0], RuntimeWarning, stacklevel=3)
    rng = _rng(seed)
    space = _Space(inputs, keys)
    y0 = _vector_output(_call(f, "f", [("inputs", space.frozen)]), "f")
    y0b = _vector_output(_call(f, "f", [("inputs", _fresh(inputs))]), "f")
    if not np.all(np.isfinite(y0)):
        raise ValueError("f(inputs) is not finite at the given point: nothing to check")
    if not _agree(y0, y0b, space.u):
        raise NondeterministicError(
            "f is not deterministic: two calls at the same inputs disagree; fix its seed"
        )
    w = _readonly_copy(rng.standard_normal(y0.shape).astype(y0.dtype if y0.dtype.kind == "f" else np.float64))
    mode = ("fast" if fast else "full") + " " + kind
    if kind == "vjp":
        G = _vjp(vjp_fn, space, w, inputs, keys)
        scalar = _VJPScalar(f, "f", space, G, w)
        reports, directions, more = _run_scalar(scalar, opts, rng)
        u = _output_eps(scalar.values, space.u)
    else:
        G = _vjp(vjp_fn, space, w, inputs, keys) if vjp_fn is not None else None
        reports, directions, more, u = _jvp_run(f, jvp_fn, space, y0, opts, rng)
    result = GradcheckResult(reports, directions, notes + more, mode=mode)
    # (GC10) the identity <w, J t>: by the VJP, by the JVP, by differences
    t = space.direction(rng, keys)
    t_ro = {k: _readonly_copy(v.astype(inputs[k].dtype)) for k, v in t.items()}
    t64 = {k: v.astype(np.float64) for k, v in t_ro.items()}
    w64 = w.astype(np.float64)
    identity, mags = {}, []
    if G is not None:
        terms = [G[k] * t64[k] for k in keys]
        identity["vjp"] = float(sum(np.sum(x) for x in terms))
        mags.append(float(sum(np.sum(np.abs(x)) for x in terms)))
    if jvp_fn is not None:
        jt = _jvp(jvp_fn, space, t_ro, y0)
        identity["jvp"] = float(np.sum(w64 * jt))
        mags.append(float(np.sum(np.abs(w64 * jt))))
    h = u ** (1.0 / 3.0)
    yp = _vector_output(_call(f, "f", [("inputs", space.moved(t64, h)[0])]), "f").astype(np.float64)
    ym = _vector_output(_call(f, "f", [("inputs", space.moved(t64, -h)[0])]), "f").astype(np.float64)
    identity["differences"] = float(np.sum(w64 * (yp - ym)) / (2 * h))
    if len(mags) == 2:
        gap, allowance = abs(identity["vjp"] - identity["jvp"]), 1e4 * u * max(mags)
        identity["ok"] = bool(gap <= allowance)
        identity["detail"] = f"|vjp - jvp| = {gap:.2e}, allowance {allowance:.1e}"
    result.identity = identity
    return result


def _vjp(vjp_fn, space, w, inputs, keys) -> dict:
    """vjp_fn(inputs, w), called twice with read-only arguments (writes and randomness are errors)."""
    G1 = _call(vjp_fn, "vjp_fn", [("inputs", space.frozen), ("u", w)])
    G2 = _call(vjp_fn, "vjp_fn", [("inputs", _fresh(inputs)), ("u", _readonly_copy(w))])
    G1 = _check_grads(G1, inputs, keys, "vjp_fn(inputs, u)")
    G2 = _check_grads(G2, inputs, keys, "vjp_fn(inputs, u)")
    for k in keys:
        if not _agree(G1[k], G2[k], space.u):
            raise NondeterministicError(f"vjp_fn is not deterministic: two calls disagree in {k!r}")
    return G1


def _jvp(jvp_fn, space, t_ro, y0) -> np.ndarray:
    out = _vector_output(_call(jvp_fn, "jvp_fn", [("inputs", space.frozen), ("tangents", t_ro)]), "jvp_fn")
    if out.shape != y0.shape:
        raise ValueError(f"jvp_fn returned shape {out.shape}; f returns shape {y0.shape}")
    return out.astype(np.float64)


def _jvp_run(f, jvp_fn, space: _Space, y0, opts: _Options, rng):
    """Per-tangent vector Taylor tests (GC9) and central differences along each tangent (GC7)."""
    y064 = y0.astype(np.float64)
    values = [float(x) for x in y064.ravel()[:4]]

    def evaluate(point):
        y = _vector_output(_call(f, "f", [("inputs", point)]), "f").astype(np.float64)
        if y.shape != y064.shape:
            raise ValueError(f"f returned shape {y.shape} at a moved point but {y064.shape} at x")
        if len(values) < 16:
            values.extend(float(x) for x in y.ravel()[:4])
        return y

    def tangent(keys):
        t = space.direction(rng, keys)
        t.update({k: np.zeros(space.x64[k].shape) for k in space.keys if k not in t})  # a full tangent
        t_ro = {k: _readonly_copy(t[k].astype(space.arrays[k].dtype)) for k in space.keys}
        t64 = {k: t_ro[k].astype(np.float64) for k in keys}
        jt = _jvp(jvp_fn, space, t_ro, y0)

        def R(h):  # (GC9)
            y = evaluate(space.moved(t64, h)[0])
            mag = max(_norm(y), _norm(y064))
            return (y - y064 - h * jt).ravel(), mag, _norm(y - y064)

        return t64, jt, R

    _, _, R0 = tangent(space.keys)
    R0(1e-3)
    u = _output_eps(values, space.u)
    noise = _measure_noise(R0, u)
    tol = opts.tol if opts.tol is not None else _default_tol(u)
    reports, directions, notes = {}, [], []

    def run(label, keys):
        t64, jt, R = tangent(keys)
        probe = _taylor_probe(R, label, u, noise, size=_norm(jt))
        if not np.all(np.isfinite(jt)):
            probe.verdict, probe.detail = "fail", "jvp is not finite"
        h = opts.eps if opts.eps is not None else u ** (1.0 / 3.0)
        num = (evaluate(space.moved(t64, h)[0]) - evaluate(space.moved(t64, -h)[0])) / (2 * h)  # (GC7)
        if probe.verdict == "kink" and opts.on_kink == "skip":
            probe.verdict = "skipped"
        return probe, jt, num

    if opts.fast:
        directions = [run(f"random tangent {j + 1}", space.keys)[0] for j in range(opts.n_directions)]
    if not opts.fast or any(p.verdict in ("fail", "kink", "undefined") for p in directions):
        per = {k: run(k, [k]) for k in space.keys}
        big = max(
            (float(np.nanmax(np.abs(x), initial=0.0)) for _, jt, num in per.values() for x in (jt, num)),
            default=0.0,
        )
        for k, (probe, jt, num) in per.items():
            rep = rel_error(k, jt.reshape(y0.shape), num.reshape(y0.shape), tol, 1e-3 * big or 1e-300)
            rep.verdict, rep.order, rep.taylor = probe.verdict, probe.order, probe
            rep.source = "central differences of f along the tangent (index: output element)"
            reports[k] = rep
    if u > space.u:
        notes.append(f"f returns float32 values (u = {u:.1e}): steps and floors sized for that")
    return reports, directions, notes, u
