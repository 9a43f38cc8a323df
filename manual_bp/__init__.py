"""manual-bp: backpropagation and BPTT derived by hand, in NumPy alone.

Every gradient here is written out from its equations (BP1-BP4, BPTT) and checked against torch autograd and
central finite differences (``manual-bp check``). Importing this package needs NumPy only.
"""

from . import checkpoint, long_bptt, optim, recurrent_second_order, training
from .gradcheck import (
    GradcheckResult,
    assert_gradients_match,
    compare_grads,
    gradcheck,
    jvpcheck,
    numerical_grad,
    vjpcheck,
)
from .gru import GRU
from .hessian_free import HessianFree
from .lstm import LSTM
from .mlp import MLP
from .optim import SGD, Adam, AdamW, ExponentialLR, StepLR, clip_grad_norm, clip_grad_value
from .recurrent import Workspace, vanishing_gradients
from .rnn import RNN
from .second_order import HvpcheckResult, hvpcheck
from .trace import Trace
from .training import fit, fit_stream

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "optim",
    "SGD",
    "Adam",
    "AdamW",
    "StepLR",
    "ExponentialLR",
    "clip_grad_norm",
    "clip_grad_value",
    "checkpoint",
    "long_bptt",
    "recurrent_second_order",
    "training",
    "fit",
    "fit_stream",
    "RNN",
    "LSTM",
    "GRU",
    "vanishing_gradients",
    "Workspace",
    "gradcheck",
    "numerical_grad",
    "compare_grads",
    "GradcheckResult",
    "assert_gradients_match",
    "vjpcheck",
    "jvpcheck",
    "hvpcheck",
    "HvpcheckResult",
    "HessianFree",
    "Trace",
    "__version__",
]
