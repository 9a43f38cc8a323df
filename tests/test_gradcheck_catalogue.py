"""A catalogue of real gradient bugs, each injected into a small NumPy model and caught by ``gradcheck``.

Every entry names its source. Each bug must be caught in float64 and float32, in full and fast modes, and
the fixed version of the same code must pass (so that each test can fail). Kinds of check:

- ``grad``: ``gradcheck(f, params, grads)`` with the buggy hand-written gradient: the verdict is "fail" and
  names the parameters the bug touches;
- ``vjp``: ``vjpcheck(f, inputs, vjp_fn)`` with the buggy backward of a vector-valued function;
- ``guard``: the checker refuses the code (a write into a read-only input, or a function that is not
  deterministic) with an error naming the culprit.

The last tests compare the verdicts with ``torch.autograd.gradcheck`` on the same functions (our NumPy
forward and hand-written backward wrapped in a ``torch.autograd.Function``) and pin every disagreement
(see docs/gradcheck.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from manual_bp.gradcheck import (
    InPlaceModificationError,
    NondeterministicError,
    gradcheck,
    vjpcheck,
)

DTYPES = {"float64": np.float64, "float32": np.float32}
MODES = {"full": False, "fast": True}


@dataclass
class Case:
    """A model at a point: ``f`` and the fixed and buggy gradients (or VJPs), and what the bug breaks."""

    kind: str  # "grad", "vjp" or "guard"
    f: object
    point: dict
    right: object  # gradient dict (grad) or vjp_fn (vjp, guard)
    wrong: object
    broken: tuple = ()  # parameters a "grad"/"vjp" bug makes wrong (the report must name exactly these)
    error: type | None = None  # the guard's exception
    culprit: str = ""  # what the guard's message must name


def _data(seed, dtype, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


# ------------------------------------------------------------------------------------------- an LSTM
# numpy-ml's layout: Z_t = [h_{t-1}, x_t]; gates G_f, G_u (input), G_o from their own weights and biases,
# candidate c~ = tanh(Z W_c + b_c); c_t = f c_{t-1} + u c~; h_t = o tanh(c_t); E = sum_t ||h_t - y_t||^2 / 2N.

LSTM_GATES = ("f", "u", "o", "c")


def _lstm_params(seed, dtype, H=2, D=2):
    rng = np.random.default_rng(seed)
    p = {f"W{g}": (0.7 * rng.standard_normal((H + D, H))).astype(dtype) for g in LSTM_GATES}
    p.update({f"b{g}": (0.5 * rng.standard_normal(H)).astype(dtype) for g in LSTM_GATES})
    return p


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _lstm_forward(p, X, Y, bias_typo=False):
    """E and the cache. ``bias_typo``: numpy-ml #42's forward, adding b_o to the forget and update gates."""
    T, N, _ = X.shape
    H = p["bf"].shape[0]
    h, c = np.zeros((N, H), X.dtype), np.zeros((N, H), X.dtype)
    cache, E = [], 0.0
    for t in range(T):
        Z = np.concatenate([h, X[t]], 1)
        bf, bu = (p["bo"], p["bo"]) if bias_typo else (p["bf"], p["bu"])
        f, u, o = _sigmoid(Z @ p["Wf"] + bf), _sigmoid(Z @ p["Wu"] + bu), _sigmoid(Z @ p["Wo"] + p["bo"])
        cc = np.tanh(Z @ p["Wc"] + p["bc"])
        c_prev, c = c, f * c + u * cc
        tc = np.tanh(c)
        h = o * tc
        E = E + 0.5 * np.sum((h - Y[t]) ** 2) / N
        cache.append((Z, f, u, o, cc, c_prev, tc, h))
    return E, cache


def _lstm_backward(p, X, Y, cache, bias_grads="right"):
    """The hand-derived BPTT of the intended model. ``bias_grads="learn_dl-53"``: b_u and b_o take the
    forget gate's delta (hanbt/learn_dl #53)."""
    T, N, _ = X.shape
    H = p["bf"].shape[0]
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dh_next, dc_next = np.zeros((N, H), X.dtype), np.zeros((N, H), X.dtype)
    for t in reversed(range(T)):
        Z, f, u, o, cc, c_prev, tc, h = cache[t]
        dh = (h - Y[t]) / N + dh_next
        do = dh * tc
        dc = dh * o * (1 - tc**2) + dc_next
        df, du, dcc = dc * c_prev, dc * cc, dc * u
        dGf, dGu, dGo, dGc = df * f * (1 - f), du * u * (1 - u), do * o * (1 - o), dcc * (1 - cc**2)
        dZ = np.zeros_like(Z)
        for name, dG in (("f", dGf), ("u", dGu), ("o", dGo), ("c", dGc)):
            g[f"W{name}"] += Z.T @ dG
            dZ += dG @ p[f"W{name}"].T
        g["bf"] += dGf.sum(0)
        g["bu"] += (dGf if bias_grads == "learn_dl-53" else dGu).sum(0)
        g["bo"] += (dGf if bias_grads == "learn_dl-53" else dGo).sum(0)
        g["bc"] += dGc.sum(0)
        dh_next, dc_next = dZ[:, :H], dc * f
    return g


def lstm_bias_typo(dtype) -> Case:
    """numpy-ml #42 (ddbourgin/numpy-ml, "Error in LSTM Implementation"): the forward pass adds b_o where b_f
    and b_u belong (a copy-paste typo); the backward pass, derived for the intended model, still returns
    gradients for b_f and b_u and only the output gate's share for b_o."""
    X, Y = _data(1, dtype, (3, 2, 2), (3, 2, 2))
    p = _lstm_params(2, dtype)
    _, cache = _lstm_forward(p, X, Y)
    right = _lstm_backward(p, X, Y, cache)
    _, cache_typo = _lstm_forward(p, X, Y, bias_typo=True)
    wrong = _lstm_backward(p, X, Y, cache_typo)

    def f_typo(q):
        return _lstm_forward(q, X, Y, bias_typo=True)[0]

    def f(q):
        return _lstm_forward(q, X, Y)[0]

    # the fixed code is the intended model with its own gradient; the bug: typo'd forward, intended backward
    return Case("grad", (f, f_typo), p, right, wrong, broken=("bf", "bo", "bu"))


def lstm_bias_from_forget_gate(dtype) -> Case:
    """hanbt/learn_dl #53 ("Error in lstm.py"): bi_grad = delta_f_list[t], bo_grad = delta_f_list[t]: the
    input and output gates' bias gradients take the forget gate's delta."""
    X, Y = _data(3, dtype, (3, 2, 2), (3, 2, 2))
    p = _lstm_params(4, dtype)

    def f(q):
        return _lstm_forward(q, X, Y)[0]

    _, cache = _lstm_forward(p, X, Y)
    right = _lstm_backward(p, X, Y, cache)
    wrong = _lstm_backward(p, X, Y, cache, bias_grads="learn_dl-53")
    return Case("grad", f, p, right, wrong, broken=("bo", "bu"))


# --------------------------------------------------------------------------------------- a tanh RNN
# h_t = tanh(x_t W + h_{t-1} U + b), E = sum_t ||h_t V - y_t||^2 / 2N, h_0 given.


def _rnn_setup(seed, dtype, T=4, N=2, D=2, H=3, O=2):
    X, Y, h0 = _data(seed, dtype, (T, N, D), (T, N, O), (N, H))
    rng = np.random.default_rng(seed + 100)
    p = {
        "W": (0.6 * rng.standard_normal((D, H))).astype(dtype),
        "U": (0.6 * rng.standard_normal((H, H))).astype(dtype),
        "b": (0.3 * rng.standard_normal(H)).astype(dtype),
        "V": (0.6 * rng.standard_normal((H, O))).astype(dtype),
    }
    return X, Y, h0, p


def _rnn_forward(p, X, Y, h0):
    hs, E = [h0], 0.0
    for t in range(X.shape[0]):
        hs.append(np.tanh(X[t] @ p["W"] + hs[-1] @ p["U"] + p["b"]))
        E = E + 0.5 * np.sum((hs[-1] @ p["V"] - Y[t]) ** 2) / X.shape[1]
    return E, hs


def _rnn_backward(p, X, Y, h0, bug=None):
    """BPTT. bug: "lost-accumulation" (= for +=), "off-by-one" (h[t-1] read as hs[t-1] of the list without
    h_0, so step 0 reads the last state), "truncated" (no gradient carried to the previous step)."""
    _, hs = _rnn_forward(p, X, Y, h0)
    N = X.shape[1]
    g = {k: np.zeros_like(v) for k, v in p.items()}
    states = hs[1:]  # h_1 .. h_T
    dh_next = np.zeros_like(h0)
    for t in reversed(range(X.shape[0])):
        h = states[t]
        h_prev = (states[t - 1] if t > 0 else states[-1]) if bug == "off-by-one" else hs[t]
        dy = (h @ p["V"] - Y[t]) / N
        g["V"] += h.T @ dy
        dz = (dy @ p["V"].T + dh_next) * (1 - h * h)
        if bug == "lost-accumulation":
            g["W"], g["U"], g["b"] = X[t].T @ dz, h_prev.T @ dz, dz.sum(0)
        else:
            g["W"] += X[t].T @ dz
            g["U"] += h_prev.T @ dz
            g["b"] += dz.sum(0)
        dh_next = np.zeros_like(h0) if bug == "truncated" else dz @ p["U"].T
    return g


def _rnn_case(seed, dtype, bug, broken) -> Case:
    X, Y, h0, p = _rnn_setup(seed, dtype)

    def f(q):
        return _rnn_forward(q, X, Y, h0)[0]

    return Case("grad", f, p, _rnn_backward(p, X, Y, h0), _rnn_backward(p, X, Y, h0, bug), broken=broken)


def rnn_lost_accumulation(dtype) -> Case:
    """A lost += across time steps: dW, dU, db assigned at each step instead of accumulated, so only the first
    step's share survives (the accumulation CS231n's rnn_backward needs, Burton2000/CS231n-2017 #7's loop;
    NervanaSystems/neon #169, a gradient not accumulated over a weight's two uses)."""
    return _rnn_case(5, dtype, "lost-accumulation", ("U", "W", "b"))


def rnn_off_by_one(dtype) -> Case:
    """Off by one in BPTT: h[t-1] at t = 0 reads h[-1], the last hidden state, instead of h_0 (the
    D_Whh += np.outer(dt, h[t-1]) line of the RNN in qixianbiao/RNN #2)."""
    return _rnn_case(6, dtype, "off-by-one", ("U",))


def rnn_truncated(dtype) -> Case:
    """The hidden state's gradient is not carried to the previous step: BPTT truncated to one step
    (qixianbiao/RNN #2, "backward seems wrong": the later h's gradient is not passed to the earlier one)."""
    return _rnn_case(7, dtype, "truncated", ("U", "W", "b"))


# ------------------------------------------------------------------------------- min-char-rnn's loss


def min_char_rnn_clipping(dtype) -> Case:
    """min-char-rnn (karpathy's gist min-char-rnn.py) clips inside lossFun: np.clip(dparam, -5, 5, out=dparam)
    before returning the gradients, so the "gradient of the loss" is wrong wherever it exceeds 5."""
    V, H, T = 4, 3, 8
    rng = np.random.default_rng(8)
    inputs = rng.integers(0, V, T)
    targets = np.zeros(T, dtype=int)  # one character over and over: large, one-signed gradients
    p = {
        "Wxh": (0.3 * rng.standard_normal((H, V))).astype(dtype),
        "Whh": (0.3 * rng.standard_normal((H, H))).astype(dtype),
        "Why": (0.3 * rng.standard_normal((V, H))).astype(dtype),
        "bh": np.zeros((H, 1), dtype),
        "by": np.zeros((V, 1), dtype),
    }
    h0 = np.zeros((H, 1), dtype)

    def forward(q):
        xs, hs, ps = {}, {-1: h0}, {}
        loss = 0.0
        for t in range(T):
            xs[t] = np.zeros((V, 1), dtype)
            xs[t][inputs[t]] = 1
            hs[t] = np.tanh(q["Wxh"] @ xs[t] + q["Whh"] @ hs[t - 1] + q["bh"])
            ys = q["Why"] @ hs[t] + q["by"]
            ps[t] = np.exp(ys - ys.max()) / np.sum(np.exp(ys - ys.max()))
            loss = loss - np.log(ps[t][targets[t], 0])
        return loss, xs, hs, ps

    def loss_fun(q, clip):
        loss, xs, hs, ps = forward(q)
        d = {k: np.zeros_like(v) for k, v in q.items()}
        dhnext = np.zeros_like(h0)
        for t in reversed(range(T)):
            dy = np.copy(ps[t])
            dy[targets[t]] -= 1
            d["Why"] += dy @ hs[t].T
            d["by"] += dy
            dh = q["Why"].T @ dy + dhnext
            dhraw = (1 - hs[t] * hs[t]) * dh
            d["bh"] += dhraw
            d["Wxh"] += dhraw @ xs[t].T
            d["Whh"] += dhraw @ hs[t - 1].T
            dhnext = q["Whh"].T @ dhraw
        if clip:
            for dparam in d.values():
                np.clip(dparam, -5, 5, out=dparam)  # the gist's line
        return loss, d

    _, right = loss_fun(p, clip=False)
    _, wrong = loss_fun(p, clip=True)
    broken = tuple(sorted(k for k in p if np.abs(right[k]).max() > 5))
    assert broken, "the point must have a gradient entry above the clip"

    def f(q):
        return forward(q)[0]

    return Case("grad", f, p, right, wrong, broken=broken)


# ------------------------------------------------------------------------------ two-layer perceptrons


def _mlp_point(seed, dtype, N=4, D=3, H=3, O=2, margin=0.15):
    """X, Y and parameters whose hidden pre-activations stay ``margin`` away from 0 (relu kinks)."""
    for attempt in range(100):
        X, Y = _data(seed + 1000 * attempt, dtype, (N, D), (N, O))
        rng = np.random.default_rng(seed + 1000 * attempt + 7)
        p = {
            "W1": rng.standard_normal((H, D)).astype(dtype),
            "b1": (0.5 * rng.standard_normal(H)).astype(dtype),
            "W2": rng.standard_normal((O, H)).astype(dtype),
            "b2": (0.5 * rng.standard_normal(O)).astype(dtype),
        }
        if np.abs(X @ p["W1"].T + p["b1"]).min() > margin:
            return X, Y, p
    raise AssertionError("no point away from the kinks")


def _mlp(act, dtype, seed, bug=None, N=4, D=3, H=3):
    """E = ||act(X W1^T + b1 (+ b1 again)) W2^T + b2 - Y||^2 / 2N and its hand-written gradient, ``bug``."""
    X, Y, p = _mlp_point(seed, dtype, N=N, D=D, H=H)
    twice = bug == "bias-twice"

    def forward(q):
        Z1 = X @ q["W1"].T + q["b1"] + (q["b1"] if twice else 0)
        A1 = {"relu": np.maximum(Z1, 0), "sigmoid": _sigmoid(Z1), "tanh": np.tanh(Z1)}[act]
        Out = A1 @ q["W2"].T + q["b2"]
        return 0.5 * np.sum((Out - Y) ** 2) / X.shape[0], (Z1, A1, Out)

    def grads(q, bug):
        _, (Z1, A1, Out) = forward(q)
        n = 1 if bug == "missing-1/N" else X.shape[0]
        dOut = (Out - Y) / n
        dW2 = dOut.T @ (Z1 if bug == "pre-activation" else A1)
        dA1 = dOut @ q["W2"]
        if act == "relu":
            dZ1 = dA1 * ((A1 >= 0) if bug == "relu>=" else (Z1 > 0))
        elif act == "sigmoid":
            dZ1 = dA1 * (Z1 * (1 - Z1) if bug == "sigmoid-of-input" else A1 * (1 - A1))
        else:
            dZ1 = dA1 * (1 - A1**2)
        dW1 = dZ1.T @ X
        return {
            "W1": dW1.T if bug == "transposed" else dW1,
            "b1": dZ1.sum(0) * (2 if twice and bug != "bias-twice" else 1),
            "W2": dW2,
            "b2": dOut.sum(0),
        }

    def f(q):
        return forward(q)[0]

    return f, p, grads(p, "none"), grads(p, bug)


def _mlp_case(act, dtype, seed, bug, broken, **kw) -> Case:
    f, p, right, wrong = _mlp(act, dtype, seed, bug, **kw)
    return Case("grad", f, p, right, wrong, broken=broken)


def mlp_transposed_weight_gradient(dtype) -> Case:
    """A transposed weight gradient (iamtrask/Grokking-Deep-Learning #22: "weight_deltas matrix was
    transposed"); W1 is square, so the shapes match and only the values can tell."""
    return _mlp_case("tanh", dtype, 11, "transposed", ("W1",), D=3, H=3)


def mlp_missing_mean(dtype) -> Case:
    """A missing 1/N: the loss is the batch mean, the gradients are batch sums (dennybritz/nn-from-scratch
    #13, "gradient checks do not match"; hunkim/DeepLearningZeroToAll #173)."""
    return _mlp_case("tanh", dtype, 12, "missing-1/N", ("W1", "W2", "b1", "b2"))


def mlp_relu_derivative_ge(dtype) -> Case:
    """relu2deriv(output) = output >= 0, true for every unit (an inactive unit's output is 0), so inactive
    units pass gradient (iamtrask/Grokking-Deep-Learning #13)."""
    return _mlp_case("relu", dtype, 13, "relu>=", ("W1", "b1"))


def mlp_sigmoid_derivative_of_input(dtype) -> Case:
    """The sigmoid's derivative taken as x (1 - x) of its input instead of s (1 - s) of its output
    (BoltzmannEntropy/interviews.ai #15)."""
    return _mlp_case("sigmoid", dtype, 14, "sigmoid-of-input", ("W1", "b1"))


def mlp_pre_activation_in_weight_gradient(dtype) -> Case:
    """The weight gradient built from the layer's pre-activation instead of its activation
    (maziarraissi/backprop #1: np.dot(H[l].T, G[l]) should be np.dot(A[l].T, G[l]))."""
    return _mlp_case("tanh", dtype, 15, "pre-activation", ("W2",))


def mlp_bias_added_twice(dtype) -> Case:
    """The forward pass adds the bias twice (lisa-lab/DeepLearningTutorials #81, kelvinxu/arctic-captions #7);
    a hand-written backward that counts it once is off by a factor 2 in b1."""
    return _mlp_case("tanh", dtype, 16, "bias-twice", ("b1",))


# ------------------------------------------------------------------------------- vector-valued layers


def softmax_diagonal_jacobian(dtype) -> Case:
    """The softmax's backward without its off-diagonal terms: dx = s (1 - s) dout instead of
    s (dout - <s, dout>) (deeplearning4j/libnd4j #440, "Softmax derivative implementation incorrect")."""
    (x,) = _data(21, dtype, (3, 4))

    def softmax(inputs):
        z = inputs["x"]
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def right(inputs, u):
        s = softmax(inputs)
        return {"x": s * (u - np.sum(s * u, 1, keepdims=True))}

    def wrong(inputs, u):
        s = softmax(inputs)
        return {"x": s * (1 - s) * u}

    return Case("vjp", softmax, {"x": x}, right, wrong, broken=("x",))


def rnn_backward_writes_upstream(dtype) -> Case:
    """rnn_backward adding the carried gradient into its upstream gradient in place,
    dh[:, t, :] = dprev_h + dh[:, t, :] (Burton2000/CS231n-2017 #7): the caller's dh is corrupted (a check
    that reuses it, or another branch that reads it, sees the sum). The checker passes u read-only."""
    (x,) = _data(22, dtype, (2, 3, 2))
    rng = np.random.default_rng(23)
    inputs = {
        "x": x,
        "Wx": (0.5 * rng.standard_normal((2, 3))).astype(dtype),
        "Wh": (0.5 * rng.standard_normal((3, 3))).astype(dtype),
    }

    def forward(inp):  # h: (N, T, H), h_0 = 0
        N, T, _ = inp["x"].shape
        h, out = np.zeros((N, 3), inp["x"].dtype), []
        for t in range(T):
            h = np.tanh(inp["x"][:, t] @ inp["Wx"] + h @ inp["Wh"])
            out.append(h)
        return np.stack(out, 1)

    def backward(inp, dh, in_place):
        hs = forward(inp)
        N, T, H = hs.shape
        g = {k: np.zeros_like(v) for k, v in inp.items()}
        dprev = np.zeros((N, H), hs.dtype)
        for t in reversed(range(T)):
            if in_place:
                dh[:, t, :] = dprev + dh[:, t, :]  # the line
                dcur = dh[:, t, :]
            else:
                dcur = dprev + dh[:, t, :]
            dz = dcur * (1 - hs[:, t] ** 2)
            h_prev = hs[:, t - 1] if t > 0 else np.zeros((N, H), hs.dtype)
            g["x"][:, t] = dz @ inp["Wx"].T
            g["Wx"] += inp["x"][:, t].T @ dz
            g["Wh"] += h_prev.T @ dz
            dprev = dz @ inp["Wh"].T
        return g

    def right(inp, u):
        return backward(inp, u, in_place=False)

    def wrong(inp, u):
        return backward(inp, u, in_place=True)

    return Case("guard", forward, inputs, right, wrong, error=InPlaceModificationError, culprit="u")


def dropout_mask_redrawn(dtype) -> Case:
    """A dropout mask drawn afresh at every call: f is not a function of the parameters, so no difference
    quotient means anything (CS231n assignment 2's dropout_forward takes a 'seed' "for gradient checking")."""
    f, p, right, _ = _mlp("tanh", dtype, 17)
    rng = np.random.default_rng(24)
    X = np.random.default_rng(25).standard_normal((4, 3)).astype(dtype)

    def f_dropout(q):
        mask = (rng.random(q["W1"].shape[0]) < 0.5) / 0.5  # a new mask per call
        A1 = np.tanh(X @ q["W1"].T + q["b1"]) * mask
        return 0.5 * np.sum((A1 @ q["W2"].T + q["b2"]) ** 2)

    return Case(
        "guard",
        (f, f_dropout),
        p,
        right,
        right,
        error=NondeterministicError,
        culprit="f is not deterministic",
    )


CATALOGUE = {
    "numpy-ml-42-lstm-bias-typo": lstm_bias_typo,
    "learn_dl-53-lstm-bias-from-forget-gate": lstm_bias_from_forget_gate,
    "rnn-lost-accumulation": rnn_lost_accumulation,
    "rnn-off-by-one-h0": rnn_off_by_one,
    "rnn-truncated-bptt": rnn_truncated,
    "min-char-rnn-clipping": min_char_rnn_clipping,
    "cs231n-2017-7-upstream-written-in-place": rnn_backward_writes_upstream,
    "transposed-weight-gradient": mlp_transposed_weight_gradient,
    "missing-1/N": mlp_missing_mean,
    "relu-derivative-ge": mlp_relu_derivative_ge,
    "sigmoid-derivative-of-input": mlp_sigmoid_derivative_of_input,
    "pre-activation-in-weight-gradient": mlp_pre_activation_in_weight_gradient,
    "bias-added-twice": mlp_bias_added_twice,
    "softmax-diagonal-jacobian": softmax_diagonal_jacobian,
    "dropout-mask-redrawn": dropout_mask_redrawn,
}


def _functions(case: Case):
    """(f of the fixed code, f of the buggy code): most bugs are in the backward pass only."""
    return case.f if isinstance(case.f, tuple) else (case.f, case.f)


def _run(case: Case, buggy: bool, fast: bool):
    f_right, f_wrong = _functions(case)
    f = f_wrong if buggy else f_right
    if case.kind == "grad":
        return gradcheck(f, case.point, case.wrong if buggy else case.right, fast=fast)
    if case.kind == "vjp" or case.error is InPlaceModificationError:
        return vjpcheck(f, case.point, case.wrong if buggy else case.right, fast=fast)
    return gradcheck(f, case.point, case.right, fast=fast)


OURS: dict = {}  # (name, buggy) -> flagged, for the float64 full-mode runs (the torch comparison reuses them)


def _flagged(name, case, buggy) -> bool:
    """Our verdict in float64, full mode: True when the check fails or refuses the code."""
    if (name, buggy) not in OURS:
        try:
            OURS[name, buggy] = not _run(case, buggy, fast=False).ok
        except (InPlaceModificationError, NondeterministicError):
            OURS[name, buggy] = True
    return OURS[name, buggy]


IDS = [f"{name}-{dt}-{mode}" for name in CATALOGUE for dt in DTYPES for mode in MODES]


@pytest.mark.filterwarnings("ignore:gradcheck:RuntimeWarning", "ignore:vjpcheck:RuntimeWarning")
@pytest.mark.parametrize(
    "name,dtype,mode", [(n, d, m) for n in CATALOGUE for d in DTYPES for m in MODES], ids=IDS
)
def test_bug_is_caught(name, dtype, mode):
    case = CATALOGUE[name](DTYPES[dtype])
    if case.kind == "guard":
        with pytest.raises(case.error, match=case.culprit):
            _run(case, buggy=True, fast=MODES[mode])
        return
    result = _run(case, buggy=True, fast=MODES[mode])
    if (dtype, mode) == ("float64", "full"):
        OURS[name, True] = not result.ok
    assert not result.ok, f"{name} ({dtype}, {mode}) was not caught:\n{result}"
    named = sorted(r.name for r in result.failures())
    assert named == sorted(case.broken), (
        f"{name}: the report names {named}, the bug breaks {case.broken}:\n{result}"
    )


@pytest.mark.filterwarnings("ignore:gradcheck:RuntimeWarning", "ignore:vjpcheck:RuntimeWarning")
@pytest.mark.parametrize(
    "name,dtype",
    [(n, d) for n in CATALOGUE for d in DTYPES],
    ids=[f"{n}-{d}" for n in CATALOGUE for d in DTYPES],
)
def test_fixed_code_passes(name, dtype):
    """The same model with the bug fixed passes in full mode: the catalogue's tests can fail."""
    case = CATALOGUE[name](DTYPES[dtype])
    result = _run(case, buggy=False, fast=False)
    if dtype == "float64":
        OURS[name, False] = not result.ok
    assert result.ok and not result.kinks, f"{name} ({dtype}): the fixed code does not pass:\n{result}"


# ------------------------------------------------------------------- agreement with torch.autograd.gradcheck


def _torch_flags(f, point, grads=None, vjp=None) -> bool:
    """torch.autograd.gradcheck (float64, its defaults eps=1e-6, atol=1e-5, rtol=1e-3) on our NumPy forward
    with our backward in a torch.autograd.Function: True when torch reports a mismatch."""
    torch = pytest.importorskip("torch")
    names = list(point)

    class NumpyFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *tensors):
            ctx.x = {k: t.detach().numpy().copy() for k, t in zip(names, tensors)}
            return torch.as_tensor(np.asarray(f(ctx.x), dtype=np.float64).copy())

        @staticmethod
        def backward(ctx, grad_out):
            if vjp is None:  # a scalar loss: the fixed gradient dict, scaled by the upstream scalar
                return tuple(
                    grad_out * torch.as_tensor(np.asarray(grads[k], dtype=np.float64)) for k in names
                )
            g = vjp(ctx.x, grad_out.detach().numpy())
            return tuple(torch.as_tensor(np.asarray(g[k], dtype=np.float64)) for k in names)

    inputs = tuple(torch.tensor(np.asarray(point[k], dtype=np.float64), requires_grad=True) for k in names)
    return not torch.autograd.gradcheck(NumpyFunction.apply, inputs, raise_exception=False)


def _torch_flagged(name, case, buggy) -> bool:
    f = _functions(case)[1 if buggy else 0]
    point = {k: np.asarray(v, np.float64) for k, v in case.point.items()}
    if case.kind == "grad":
        return _torch_flags(f, point, grads=case.wrong if buggy else case.right)
    if case.kind == "guard" and case.error is NondeterministicError:
        return _torch_flags(f, point, grads=case.right)
    return _torch_flags(f, point, vjp=case.wrong if buggy else case.right)


# torch.autograd.gradcheck cannot see these; docs/gradcheck.md explains each
TORCH_BLIND = {
    (
        "cs231n-2017-7-upstream-written-in-place",
        True,
    ): "torch hands backward a fresh grad_output each call, so a "
    "write into it changes nothing torch looks at; the caller's array is still corrupted",
}


def test_agreement_with_torch_gradcheck_on_the_catalogue():
    """float64, where torch decides: the fixed and the buggy version of every catalogue entry. The only
    disagreements are those in TORCH_BLIND."""
    agree, disagree = 0, set()
    for name, build in CATALOGUE.items():
        case = build(np.float64)
        for buggy in (False, True):
            if _flagged(name, case, buggy) == _torch_flagged(name, case, buggy):
                agree += 1
            else:
                disagree.add((name, buggy))
    assert disagree == set(TORCH_BLIND), disagree
    assert agree == 2 * len(CATALOGUE) - len(TORCH_BLIND) == 29


def _edge(scale, loss_scale, act2="tanh", bug=None):
    """E = c ||act2(tanh(X W1^T + b1) W2^T + b2) - Y||^2 / 2N (float64) and its gradient, optionally with
    a 10% error in ``bug``."""
    rng = np.random.default_rng(7)
    X, Y = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    p = {
        "W1": scale * rng.standard_normal((3, 3)),
        "b1": scale * rng.standard_normal(3),
        "W2": scale * rng.standard_normal((2, 3)),
        "b2": scale * rng.standard_normal(2),
    }
    act, dact = {"tanh": (np.tanh, lambda a, z: 1 - a * a), "sin": (np.sin, lambda a, z: np.cos(z))}[act2]

    def fwd(q):
        A1 = np.tanh(X @ q["W1"].T + q["b1"])
        Z2 = A1 @ q["W2"].T + q["b2"]
        A2 = act(Z2)
        return loss_scale * 0.5 * np.sum((A2 - Y) ** 2) / 4, (A1, Z2, A2)

    _, (A1, Z2, A2) = fwd(p)
    d2 = loss_scale * (A2 - Y) / 4 * dact(A2, Z2)
    d1 = (d2 @ p["W2"]) * (1 - A1**2)
    g = {"W1": d1.T @ X, "b1": d1.sum(0), "W2": d2.T @ A1, "b2": d2.sum(0)}
    if bug:
        g[bug] = g[bug] * 1.1
    return (lambda q: fwd(q)[0]), p, g


EDGES = {  # label: (case, our verdict, torch flags it)
    "weights-1e-6-right": (lambda: _edge(1e-6, 1.0), "pass", False),
    "weights-1e-6-W1-10%-off": (lambda: _edge(1e-6, 1.0, bug="W1"), "fail", False),  # torch: atol 1e-5
    "loss-x1e-8-W2-10%-off": (lambda: _edge(0.5, 1e-8, bug="W2"), "fail", False),  # torch: atol 1e-5
    "loss-x1e+6-right": (lambda: _edge(0.5, 1e6), "pass", False),
    "loss-x1e+6-W2-10%-off": (lambda: _edge(0.5, 1e6, bug="W2"), "fail", True),
    "sin-of-large-weights-right": (lambda: _edge(30.0, 1.0, act2="sin"), "pass", False),
}


@pytest.mark.parametrize("label", list(EDGES), ids=list(EDGES))
def test_torch_gradcheck_edge_cases(label):
    """Where the two disagree by design: torch's absolute tolerance (atol = 1e-5) passes any gradient whose
    entries are all below it, whatever their relative error; the Taylor test has no scale."""
    build, ours, torch_flags = EDGES[label]
    f, p, g = build()
    result = gradcheck(f, p, g)
    assert result.verdict == ours, str(result)
    assert _torch_flags(f, p, grads=g) == torch_flags
