"""Multilayer perceptron with the four backpropagation equations, derived by hand.

A net is given by its layer sizes ``[n0, n1, ..., nL]``. Layer l = 1..L computes, for a batch of N samples
stored as rows (``A[0] = X``):

    (F1)  Z[l] = A[l-1] @ W_l.T + b_l          z^(l) = W^(l) a^(l-1) + b^(l),  W_l : (n_l, n_{l-1})
    (F2)  A[l] = f(Z[l])                       a^(l) = f(z^(l))

``W_l`` has the seed's and ``torch.nn.Linear``'s layout: w_ij links node i of layer l to node j of layer
l-1. Our ``W1`` is the seed's ``W^(2)`` (the seed numbers the input layer 1).

The loss is the batch mean of each sample's loss (``losses.py``). With delta^(l) = dE/dz^(l), one row per
sample, backpropagation is four equations:

    (BP1)  delta^(L) = dE/da^(L) ⊙ f'(z^(L))          (for softmax+CE and sigmoid+BCE: (a^(L) - y) / N)
    (BP2)  delta^(l) = (W^(l+1)^T delta^(l+1)) ⊙ f'(z^(l))      rows: delta[l] = (delta[l+1] @ W_{l+1}) * f'
    (BP3)  dE/dW^(l) = delta^(l) (a^(l-1))^T                     summed over the batch: delta[l].T @ A[l-1]
    (BP4)  dE/db^(l) = delta^(l)                                 summed over the batch: delta[l].sum(0)

and, for ``input_grad=True``, dE/dX = delta^(1) @ W_1 (BP2 one layer further).

Forward mode (``jvp``) pushes a tangent of the parameters forward with the same layers:

    (MJ1)  dZ[l] = dA[l-1] @ W_l.T + A[l-1] @ dW_l.T + db_l
    (MJ2)  dA[l] = f'(Z[l]) ⊙ dZ[l]
    (MJ3)  dE    = sum(delta^(L) ⊙ dZ[L])    (the loss's own local derivative, no reverse pass)

Second order (``hvp``, ``gvp``). Pearlmutter's R-operator R{x} = d/dr x(theta + r v)|_{r=0} takes a
direction v = (V_l, c_l) (keyed like params: ``v["W<l>"] = V_l``, ``v["b<l>"] = c_l``, optionally
``v["X"]``) and is applied to every line above; since the gradient is a function of theta,
R{dE/dtheta} = H v, the exact Hessian-vector product, without forming H (about 2-3 times the cost of
``loss_and_grad``). Applied to the forward pass (F1, F2) it is the forward mode MJ1-MJ2 (R{A[0]} = v["X"],
or 0):

    (RF1)  R{Z[l]} = R{A[l-1]} @ W_l.T + A[l-1] @ V_l.T + c_l
    (RF2)  R{A[l]} = f'(Z[l]) ⊙ R{Z[l]}

Applied to BP1 (per loss; p = softmax(z), s = sigmoid(z), a = f(z) at the output, rows of N samples):

    (RB1)  squared_error:         R{delta^(L)} = (f'(z)^2 + (a - y) ⊙ f''(z)) ⊙ R{z} / N
           cross_entropy:         R{delta^(L)} = (p ⊙ R{z} - p (p · R{z})) / N     (softmax Jacobian R{z})
           binary_cross_entropy:  R{delta^(L)} = s ⊙ (1 - s) ⊙ R{z} / N

and to BP2-BP4 by the product rule; the products with the direction V are the parameter's own change:

    (RB2)  R{delta^(l)} = (R{delta^(l+1)} @ W_{l+1} + delta^(l+1) @ V_{l+1}) ⊙ f'(Z[l])
                          + (delta^(l+1) @ W_{l+1}) ⊙ f''(Z[l]) ⊙ R{Z[l]}
    (RB3)  (H v)_{W_l} = R{dE/dW_l} = R{delta^(l)}.T @ A[l-1] + delta^(l).T @ R{A[l-1]}
    (RB4)  (H v)_{b_l} = R{dE/db_l} = R{delta^(l)}.sum(0)

f'' (from z, a and f'): sigmoid f'(1 - 2a); tanh -2a f'; softplus s(1 - s) with s = f' = sigmoid(z);
identity 0; relu 0 (away from its kink, where f' jumps; torch's double backward also gives 0 there).
With v["X"] the product is still taken w.r.t. the parameters: (RB3)'s second term then also holds at l = 1.

Gauss-Newton (Schraudolph 2002; Martens 2010). With J = dZ[L]/dtheta (N*nL x P) and H_L the Hessian of
the batch-mean loss in Z[L], H = J^T H_L J + sum_nk delta^(L)_nk d^2 Z[L]_nk / dtheta^2; the second sum is
what RB2's f'' term and the cross terms delta @ V, delta.T @ R{A} carry. Dropping it leaves

    (GN1)  G = J^T H_L J,     v^T G v = (J v)^T H_L (J v) >= 0   (H_L positive semi-definite)

J v is the R-forward pass RF1-RF2 (R{Z[L]} = J v), H_L J v is RB1 without its f'' term, and J^T is
backpropagation (BP2-BP4 applied to D^(l), with no R-terms):

    (GN2)  D^(L) = cross_entropy:         (p ⊙ R{z} - p (p · R{z})) / N     H_L = (diag(p) - p p^T) / N
                   binary_cross_entropy:  s ⊙ (1 - s) ⊙ R{z} / N             H_L = diag(s (1 - s)) / N
                   squared_error:         f'(z)^2 ⊙ R{z} / N
    (GN3)  D^(l) = (D^(l+1) @ W_{l+1}) ⊙ f'(Z[l])
    (GN4)  (G v)_{W_l} = D^(l).T @ A[l-1],     (G v)_{b_l} = D^(l).sum(0)

For the first two the output non-linearity is part of the loss (matching loss), and so is squared error on
an identity output (H_L = I / N). For squared error on any other output f the split is taken at the
activations a = f(z) instead (Schraudolph's form): H_L = I / N in a and J_a = diag(f'(z)) J, so
G = J_a^T J_a / N, which stays positive semi-definite; splitting at z would keep the (a - y) ⊙ f''(z) term of
RB1, which can be negative. For a one-layer net with a matching loss Z[L] is linear in theta and G = H.
``gvp_operator(X, Y)`` returns the product as a function that reuses one forward and backward pass (what
Hessian-free optimisation's conjugate gradient needs: many products at one theta).
"""

from __future__ import annotations

import numpy as np

from ._validation import (
    as_float_array,
    as_labels,
    check_choice,
    check_dtype,
    check_finite,
    check_int,
    check_param_dict,
    check_seed,
)
from .activations import ACTIVATIONS
from .losses import LOSSES, loss_and_delta, sigmoid, softmax

OUTPUT_ACTIVATIONS = tuple(ACTIVATIONS) + ("softmax",)

#: the output activation each loss requires (None: any but softmax)
LOSS_OUTPUT = {"squared_error": None, "cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}


def _sigmoid_second(z, a, fp):
    return fp * (1 - 2 * a)  # f'' = a (1 - a) (1 - 2a)


def _tanh_second(z, a, fp):
    return -2 * a * fp  # f'' = -2a (1 - a^2)


def _softplus_second(z, a, fp):
    return fp * (1 - fp)  # f' = s = sigmoid(z), f'' = s (1 - s)


#: name -> f''(z, a, f') for the R-pass (RB1, RB2); None where f'' = 0 (relu off its kink, identity)
SECOND_DERIVATIVES = {
    "sigmoid": _sigmoid_second,
    "tanh": _tanh_second,
    "relu": None,
    "identity": None,
    "softplus": _softplus_second,
}


class MLP:
    """Fully connected net ``sizes = [n0, ..., nL]`` trained by backpropagation.

    Parameters
    ----------
    sizes : list of int
        Layer widths, input first; at least two entries, each >= 1.
    hidden_activation, output_activation : str
        One of sigmoid, tanh, relu, identity, softplus; the output may also be softmax (with cross_entropy).
    loss : {"squared_error", "cross_entropy", "binary_cross_entropy"}
        cross_entropy needs a softmax output and binary_cross_entropy a sigmoid output.
    dtype : float32 or float64
        Parameters, activations and gradients all stay in this dtype.
    seed : int or None
        Seeds the weight initialisation.

    Initialisation: ``W_l ~ Normal(0, gain^2 / n_{l-1})`` with gain 1 (LeCun, Nielsen's "improved"
    initialisation) or sqrt(2) for a relu layer (He), so that z keeps unit scale and sigmoids do not start
    saturated; ``b_l ~ Uniform(-1/sqrt(n_{l-1}), 1/sqrt(n_{l-1}))`` as ``torch.nn.Linear``, so that biases
    are non-zero from the start and every bias path is exercised.

    Attributes
    ----------
    params : dict
        ``"W1", "b1", ..., "WL", "bL"``; ``W_l : (n_l, n_{l-1})``, ``b_l : (n_l,)``.
    """

    #: the axis of X and Y that indexes samples (recurrent models are time-major: axis 1)
    BATCH_AXIS = 0

    def __init__(
        self,
        sizes,
        hidden_activation="sigmoid",
        output_activation="sigmoid",
        loss="squared_error",
        dtype=np.float64,
        seed=None,
    ):
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
            raise TypeError(f"sizes must be a list of layer widths [n0, ..., nL]; got {sizes!r}")
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least 2 layers [n0, nL]; got {list(sizes)!r}")
        self.sizes = [check_int(f"sizes[{i}]", n, minimum=1) for i, n in enumerate(sizes)]
        self.hidden_activation = check_choice("hidden_activation", hidden_activation, ACTIVATIONS)
        self.output_activation = check_choice("output_activation", output_activation, OUTPUT_ACTIVATIONS)
        self.loss_name = check_choice("loss", loss, LOSSES)
        required = LOSS_OUTPUT[self.loss_name]
        if required is not None and self.output_activation != required:
            raise ValueError(
                f"loss={self.loss_name!r} needs output_activation={required!r}; "
                f"got {self.output_activation!r}"
            )
        if required is None and self.output_activation == "softmax":
            raise ValueError("output_activation='softmax' is only allowed with loss='cross_entropy'")
        self.dtype = check_dtype(dtype)
        self.seed = check_seed(seed)
        self.params = self._init_params(np.random.default_rng(self.seed))

    # ------------------------------------------------------------------ set-up
    @property
    def L(self) -> int:
        """Number of weight layers."""
        return len(self.sizes) - 1

    def config(self) -> dict:
        """The constructor arguments, enough to rebuild an identical (untrained) model."""
        return {
            "sizes": list(self.sizes),
            "hidden_activation": self.hidden_activation,
            "output_activation": self.output_activation,
            "loss": self.loss_name,
            "dtype": self.dtype.name,
            "seed": self.seed,
        }

    def _activation_of(self, l):
        return self.output_activation if l == len(self.sizes) - 1 else self.hidden_activation

    def _init_params(self, rng) -> dict:
        params = {}
        for l in range(1, self.L + 1):
            n_in, n_out = self.sizes[l - 1], self.sizes[l]
            gain = np.sqrt(2.0) if self._activation_of(l) == "relu" else 1.0
            params[f"W{l}"] = (rng.standard_normal((n_out, n_in)) * (gain / np.sqrt(n_in))).astype(self.dtype)
            bound = 1.0 / np.sqrt(n_in)
            params[f"b{l}"] = rng.uniform(-bound, bound, n_out).astype(self.dtype)
        return params

    def _f(self, l):
        name = self._activation_of(l)
        if name == "softmax":
            return softmax, None
        return ACTIVATIONS[name]

    # ------------------------------------------------------------------ validation
    def _check_X(self, X) -> np.ndarray:
        n0 = self.sizes[0]
        if type(X) is np.ndarray and X.dtype == self.dtype and X.ndim == 2 and len(X) and X.shape[1] == n0:
            check_finite("X", X)  # an array of our dtype and shape already: as_float_array's one check left
            return X
        return as_float_array("X", X, self.dtype, (("N", None), ("n0", n0)))

    def _check_Y(self, Y, N) -> np.ndarray:
        K = self.sizes[-1]
        if self.loss_name == "cross_entropy":
            arr = np.asarray(Y)
            if arr.ndim == 1:
                if arr.dtype.kind in "iu" and len(arr) == N and 0 <= arr.min() and arr.max() < K:
                    return arr.astype(np.intp, copy=False)  # valid; else as_labels says what is wrong
                return as_labels("Y", arr, K, (("N", N),))
            Y = as_float_array("Y", arr, self.dtype, (("N", N), ("nL", K)))
            if (Y < 0).any() or not np.allclose(
                Y.sum(axis=1), 1, rtol=0, atol=1e-6 if Y.itemsize == 8 else 1e-4
            ):
                raise ValueError("Y rows for cross_entropy must be one-hot or probability rows (>= 0, sum 1)")
            return Y
        arr = np.asarray(Y)
        if arr.ndim == 1 and K == 1:  # logistic regression: y of shape (N,)
            arr = arr.reshape(-1, 1)
        Y = as_float_array("Y", arr, self.dtype, (("N", N), ("nL", K)))
        if self.loss_name == "binary_cross_entropy" and ((Y < 0) | (Y > 1)).any():
            raise ValueError(
                f"Y for binary_cross_entropy must lie in [0, 1]; got values in [{Y.min()}, {Y.max()}]"
            )
        return Y

    # ------------------------------------------------------------------ forward
    def _forward(self, X, output=True):
        """Cache of the forward pass: ``Z[l]`` and ``A[l]`` for l = 0..L (``Z[0]`` is None, ``A[0] = X``).

        With ``output=False`` the output activation is left to the loss (``A[L]`` is None): see
        ``losses.loss_and_delta``.
        """
        Z, A = [None], [X]
        L = self.L
        for l in range(1, L + 1):
            W, b = self.params[f"W{l}"], self.params[f"b{l}"]
            z = A[-1] @ W.T  # (F1) (N, n_l)
            z += b  # (F1)
            f, _ = self._f(l)
            Z.append(z)
            A.append(f(z) if output or l < L else None)  # (F2)
        return Z, A

    def forward(self, X) -> np.ndarray:
        """Output activations ``a^(L)``.

        X : (N, n0) array  ->  (N, nL) array in the model's dtype.
        """
        X = self._check_X(X)
        return self._forward(X)[1][-1]

    def predict(self, X) -> np.ndarray:
        """Class predictions: argmax for softmax, threshold 0.5 for sigmoid (one column) or argmax."""
        a = self.forward(X)
        if a.shape[1] == 1:
            return (a[:, 0] > 0.5).astype(np.intp)
        return a.argmax(axis=1)

    def loss(self, X, Y, return_outputs=False):
        """Batch-mean loss E as a Python float. X : (N, n0); Y : (N, nL), or labels (N,) for cross_entropy.

        With ``return_outputs``: ``(E, a^(L))`` from the same forward pass (what an accuracy needs).
        """
        X = self._check_X(X)
        Y = self._check_Y(Y, len(X))
        Z, A = self._forward(X)
        E = LOSSES[self.loss_name](Z[-1], A[-1], Y)
        return (E, A[-1]) if return_outputs else E

    def validate(self, X, Y) -> None:
        """Check the arguments of ``loss_and_grad`` as it would (shapes, dtypes, label ranges, finiteness),
        without computing anything; raises ValueError or TypeError naming what was expected and given."""
        self._check_Y(Y, len(self._check_X(X)))

    def kink_distance(self, X) -> float:
        """The smallest |z| over the pre-activations of relu layers (inf without relu): how close to the
        kink a finite-difference step starts."""
        relu = [l for l in range(1, self.L + 1) if self._activation_of(l) == "relu"]
        if not relu:
            return float("inf")
        Z, _ = self._forward(self._check_X(X))
        return min(float(np.abs(Z[l]).min()) for l in relu)

    # ------------------------------------------------------------------ reverse mode
    def loss_and_grad(self, X, Y, input_grad=False, workspace=None):
        """Loss and its gradient by backpropagation (BP1-BP4).

        ``workspace`` is accepted for a uniform training loop and not used: the MLP's per-call arrays are
        the activations themselves, which it returns to nobody and frees with the call.

        Returns ``(loss, grads)``: ``grads`` has the keys and shapes of ``params``, plus ``"X" : (N, n0)``
        when ``input_grad`` is true.
        """
        X = self._check_X(X)
        Y = self._check_Y(Y, len(X))
        Z, A = self._forward(X, output=False)
        L = self.L
        E, delta = loss_and_delta(self.loss_name, Z[L], Y, *self._f(L))  # (BP1) delta^(L) : (N, nL)
        grads = {}
        for l in range(L, 0, -1):
            grads[f"W{l}"] = delta.T @ A[l - 1]  # (BP3) (n_l, n_{l-1})
            grads[f"b{l}"] = delta.sum(axis=0)  # (BP4) (n_l,)
            if l > 1:
                fprime = self._f(l - 1)[1]
                delta = delta @ self.params[f"W{l}"]  # (BP2) (N, n_{l-1})
                delta *= fprime(Z[l - 1], A[l - 1], out=Z[l - 1])  # (BP2) ⊙ f'(z); z^(l-1) is not read again
        if input_grad:
            grads["X"] = delta @ self.params["W1"]  # dE/dX, BP2 without an activation
        ordered = {k: grads[k] for k in self.params}
        if input_grad:
            ordered["X"] = grads["X"]
        return E, ordered

    def trace(self, X, Y, input_grad=False, workspace=None):
        """Every intermediate of ``loss_and_grad(X, Y, input_grad)`` under the derivation's names:
        ``z^(l)``, ``a^(l)``, ``delta^(l)``, ``dE/da^(l)``, ``dE/dW^(l)``, ``dE/db^(l)`` (see
        ``manual_bp.trace``).

        Runs the same operations as ``loss_and_grad`` (``_grad_cache``), so ``trace.loss`` and
        ``trace.grads`` equal its results bit for bit. Returns a ``manual_bp.trace.Trace``.
        """
        from .trace import Trace

        X = self._check_X(X)
        Y = self._check_Y(Y, len(X))
        cache = self._grad_cache(X, Y)
        grads = dict(cache["grads"])
        if input_grad:
            grads["X"] = cache["deltas"][1] @ self.params["W1"]  # dE/dX, as loss_and_grad
        L, Z, A = self.L, cache["Z"], cache["A"]
        tr = Trace(type(self).__name__, cache["E"], grads)
        tr.add("a^(0)", X, "input", "the input X, one sample per row")
        for l in range(1, L + 1):
            act = self._activation_of(l)
            tr.add(f"z^({l})", Z[l], "F1", f"W{l} a^({l - 1}) + b{l}, the pre-activation of layer {l}")
            a = A[l] if l < L else self._f(L)[0](Z[L])  # the output, as forward() computes it
            tr.add(f"a^({l})", a, "F2", f"{act}(z^({l})), the activation of layer {l}")
        tr.add("E", np.array(cache["E"]), "loss", f"the batch-mean {self.loss_name} loss")
        for l in range(L, 0, -1):
            if l == L:
                tr.add(f"delta^({L})", cache["deltas"][L], "BP1", f"dE/dz^({L}), the output layer's error")
            else:
                tr.add(f"dE/da^({l})", cache["backs"][l], "BP2",
                       f"delta^({l + 1}) W{l + 1}, back through W{l + 1}")
                tr.add(f"delta^({l})", cache["deltas"][l], "BP2",
                       f"dE/da^({l}) ⊙ f'(z^({l})), layer {l}'s error")
            tr.add(f"dE/dW^({l})", grads[f"W{l}"], "BP3", f"delta^({l})^T a^({l - 1}), summed over the batch")
            tr.add(f"dE/db^({l})", grads[f"b{l}"], "BP4", f"delta^({l}) summed over the batch")
        if input_grad:
            tr.add("dE/da^(0)", grads["X"], "BP2", "delta^(1) W1, the gradient of the input (= grads['X'])")
        return tr

    # ------------------------------------------------------------------ forward mode
    def jvp(self, X, Y, tangents):
        """Forward-mode directional derivative of the loss, with no reverse pass.

        tangents : dict keyed like ``params`` (plus an optional ``"X" : (N, n0)``).
        Returns ``(loss, dloss)`` with ``dloss = sum_k <dE/dtheta_k, tangents[k]>``.
        A full gradient by forward mode takes one such pass per parameter; reverse mode takes one in all.
        """
        X = self._check_X(X)
        Y = self._check_Y(Y, len(X))
        T = check_param_dict("tangents", tangents, self.params, self.dtype, optional=("X",))
        dA = np.zeros_like(X)
        if "X" in tangents:
            dA = as_float_array(
                "tangents['X']", tangents["X"], self.dtype, (("N", len(X)), ("n0", self.sizes[0]))
            )
        A = X
        for l in range(1, self.L + 1):
            W, b = self.params[f"W{l}"], self.params[f"b{l}"]
            z = A @ W.T + b  # (F1)
            dz = dA @ W.T + A @ T[f"W{l}"].T + T[f"b{l}"]  # (MJ1)
            f, fprime = self._f(l)
            if l < self.L:
                A = f(z)  # (F2)
                dA = fprime(z, A) * dz  # (MJ2)
        E, delta_L = loss_and_delta(self.loss_name, z, Y, f, fprime)  # E and delta^(L) as in BP1
        return E, float(np.sum(delta_L * dz))  # (MJ3)

    # ------------------------------------------------------------------ second order
    def _check_direction(self, v, N) -> dict:
        """A direction keyed like ``params`` (plus an optional ``"X" : (N, n0)``), cast to our dtype."""
        V = check_param_dict("v", v, self.params, self.dtype, optional=("X",))
        if "X" in v:
            V["X"] = as_float_array("v['X']", v["X"], self.dtype, (("N", N), ("n0", self.sizes[0])))
        return V

    def _grad_cache(self, X, Y) -> dict:
        """``loss_and_grad``'s computation (the same operations, so E and grads are bit for bit the same),
        keeping what the R-passes read: Z[l], A[l] (A[L] None), f'(Z[l]) and dE/dA[l] for hidden l, and
        delta^(l) for every l."""
        Z, A = self._forward(X, output=False)
        L = self.L
        fprimes, backs, deltas = [None] * (L + 1), [None] * (L + 1), [None] * (L + 1)
        for l in range(1, L):
            fprimes[l] = self._f(l)[1](Z[l], A[l])  # f'(Z[l]), (N, n_l)
        E, delta = loss_and_delta(self.loss_name, Z[L], Y, *self._f(L))  # (BP1)
        deltas[L] = delta
        grads = {}
        for l in range(L, 0, -1):
            grads[f"W{l}"] = delta.T @ A[l - 1]  # (BP3)
            grads[f"b{l}"] = delta.sum(axis=0)  # (BP4)
            if l > 1:
                backs[l - 1] = delta @ self.params[f"W{l}"]  # (BP2) dE/dA[l-1] : (N, n_{l-1})
                delta = backs[l - 1] * fprimes[l - 1]  # (BP2) ⊙ f'(z)
                deltas[l - 1] = delta
        grads = {k: grads[k] for k in self.params}
        return {
            "E": E,
            "grads": grads,
            "Z": Z,
            "A": A,
            "fprimes": fprimes,
            "backs": backs,
            "deltas": deltas,
            "params": dict(self.params),
        }

    def _r_forward(self, cache, V):
        """R{Z[l]} and R{A[l]} (RF1, RF2); ``RA[l]`` is None where it is zero (R{A[0]} without v["X"])."""
        A, fprimes, L = cache["A"], cache["fprimes"], self.L
        RZ, RA = [None] * (L + 1), [V.get("X")] + [None] * L
        for l in range(1, L + 1):
            rz = A[l - 1] @ V[f"W{l}"].T  # (RF1) A[l-1] @ V_l.T
            if RA[l - 1] is not None:
                rz += RA[l - 1] @ cache["params"][f"W{l}"].T  # (RF1) R{A[l-1]} @ W_l.T
            rz += V[f"b{l}"]  # (RF1) + c_l
            RZ[l] = rz
            if l < L:
                RA[l] = fprimes[l] * rz  # (RF2)
        return RZ, RA

    def _output_curvature(self, cache, Y, rz, exact) -> np.ndarray:
        """H_L R{z} at the output: R{delta^(L)} (RB1) when ``exact``, else the Gauss-Newton D^(L) (GN2)."""
        z, N = cache["Z"][self.L], len(rz)
        if self.loss_name == "cross_entropy":
            p = softmax(z)
            d = p * rz
            d -= p * d.sum(axis=1, keepdims=True)  # (RB1)/(GN2) p ⊙ R{z} - p (p · R{z})
        elif self.loss_name == "binary_cross_entropy":
            s = sigmoid(z)
            d = s * (1 - s) * rz  # (RB1)/(GN2) s (1 - s) ⊙ R{z}
        else:
            name = self.output_activation
            f, fprime = ACTIVATIONS[name]
            a = f(z)
            fp = fprime(z, a)
            d = fp * fp * rz  # (RB1)/(GN2) f'(z)^2 ⊙ R{z}
            fpp = SECOND_DERIVATIVES[name]
            if exact and fpp is not None:
                d += (a - Y) * fpp(z, a, fp) * rz  # (RB1) + (a - y) ⊙ f''(z) ⊙ R{z}
        d /= N
        return d

    def hvp(self, X, Y, v):
        """Exact Hessian-vector product of the batch-mean loss by the R-operator (RF1-RF2, RB1-RB4).

        v : dict keyed like ``params`` (plus an optional ``"X" : (N, n0)``, a tangent of the inputs as in
        ``jvp``; the product is still taken w.r.t. the parameters).
        Returns ``(E, grads, Hv)``: E and grads exactly as ``loss_and_grad`` returns them, and
        ``Hv = R{dE/dtheta} = d/dr grad E(theta + r v)|_0`` keyed like ``params``. Cost about 2-3 gradients.
        """
        X = self._check_X(X)
        Y = self._check_Y(Y, len(X))
        V = self._check_direction(v, len(X))
        cache = self._grad_cache(X, Y)
        A, Z, L = cache["A"], cache["Z"], self.L
        deltas, backs, fprimes = cache["deltas"], cache["backs"], cache["fprimes"]
        RZ, RA = self._r_forward(cache, V)
        Rd = self._output_curvature(cache, Y, RZ[L], exact=True)  # (RB1) R{delta^(L)}
        Hv = {}
        for l in range(L, 0, -1):
            hw = Rd.T @ A[l - 1]  # (RB3) R{delta^(l)}.T @ A[l-1]
            if RA[l - 1] is not None:
                hw += deltas[l].T @ RA[l - 1]  # (RB3) + delta^(l).T @ R{A[l-1]}
            Hv[f"W{l}"] = hw
            Hv[f"b{l}"] = Rd.sum(axis=0)  # (RB4)
            if l > 1:
                Rback = Rd @ self.params[f"W{l}"]  # (RB2) R{delta^(l)} @ W_l
                Rback += deltas[l] @ V[f"W{l}"]  # (RB2) + delta^(l) @ V_l
                Rd = Rback * fprimes[l - 1]  # (RB2) ⊙ f'(Z[l-1])
                fpp = SECOND_DERIVATIVES[self.hidden_activation]
                if fpp is not None:
                    a = A[l - 1]
                    Rd += backs[l - 1] * fpp(Z[l - 1], a, fprimes[l - 1]) * RZ[l - 1]  # (RB2) f'' term
        return cache["E"], cache["grads"], {k: Hv[k] for k in self.params}

    def _gn_product(self, cache, Y, V) -> dict:
        """G v from a gradient cache: J v (RF1-RF2), H_L (GN2), J^T by backpropagation (GN3-GN4)."""
        A, fprimes, L = cache["A"], cache["fprimes"], self.L
        RZ, _ = self._r_forward(cache, V)  # R{Z[L]} = J v
        D = self._output_curvature(cache, Y, RZ[L], exact=False)  # (GN2) D^(L) = H_L J v
        Gv = {}
        for l in range(L, 0, -1):
            Gv[f"W{l}"] = D.T @ A[l - 1]  # (GN4)
            Gv[f"b{l}"] = D.sum(axis=0)  # (GN4)
            if l > 1:
                D = D @ cache["params"][f"W{l}"]  # (GN3)
                D *= fprimes[l - 1]  # (GN3) ⊙ f'(Z[l-1])
        return {k: Gv[k] for k in self.params}

    def gvp(self, X, Y, v):
        """Gauss-Newton matrix-vector product G v = J^T H_L J v (GN1-GN4), G positive semi-definite.

        v : dict keyed like ``params`` (plus an optional ``"X" : (N, n0)``, which enters J v only).
        Returns ``(E, grads, Gv)``: E and grads exactly as ``loss_and_grad`` returns them, Gv keyed like
        ``params``. Squared error on a non-identity output uses Schraudolph's split at the activations.
        """
        X = self._check_X(X)
        Y = self._check_Y(Y, len(X))
        V = self._check_direction(v, len(X))
        cache = self._grad_cache(X, Y)
        return cache["E"], cache["grads"], self._gn_product(cache, Y, V)

    def gvp_operator(self, X, Y):
        """``(E, grads, product)`` with ``product(v) -> Gv``: one forward and backward pass shared by many
        Gauss-Newton products (the inner loop of Hessian-free optimisation).

        ``product`` uses the parameter arrays and activations of this call: it is valid until the parameters
        change (an in-place update of ``params`` makes it stale).
        """
        X = self._check_X(X)
        Y = self._check_Y(Y, len(X))
        cache = self._grad_cache(X, Y)
        N = len(X)

        def product(v):
            return self._gn_product(cache, Y, self._check_direction(v, N))

        return cache["E"], cache["grads"], product

    # ------------------------------------------------------------------ torch, both ways
    @classmethod
    def from_torch(cls, seq, loss="squared_error", dtype=None, seed=None):
        """The same net from a torch ``nn.Sequential`` of ``nn.Linear`` layers and supported activations
        (``nn.Sigmoid``, ``nn.Tanh``, ``nn.ReLU``, ``nn.Softplus``, ``nn.Identity``); with cross-entropy the
        Sequential ends in its logits. Reads the modules through ``state_dict()``. Needs torch installed."""
        from .torch_io import mlp_from_torch

        return mlp_from_torch(seq, loss=loss, dtype=dtype, seed=seed, cls=cls)

    def to_torch(self):
        """``nn.Sequential`` with our weights and activations (softmax left to the loss). Needs torch."""
        from .torch_io import mlp_to_torch

        return mlp_to_torch(self)

    def torch_grads(self, grads, module=None) -> dict:
        """Our gradient dict under the Sequential's parameter names (``"0.weight"``, ``"0.bias"``, ...), to
        compare with ``p.grad`` for ``name, p in module.named_parameters()``. Needs no torch."""
        from .torch_io import mlp_torch_grads

        return mlp_torch_grads(self, grads, module)

    def __repr__(self):
        return (
            f"MLP({self.sizes}, hidden_activation={self.hidden_activation!r}, "
            f"output_activation={self.output_activation!r}, loss={self.loss_name!r}, dtype={self.dtype.name})"
        )
