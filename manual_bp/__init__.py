"""manual-bp: backpropagation and BPTT derived by hand, in NumPy alone.

Every gradient here is written out from its equations (BP1-BP4, BPTT) and checked against torch autograd and
central finite differences (``manual-bp check``). Importing this package needs NumPy only.
"""

from .gradcheck import GradcheckResult, compare_grads, gradcheck, numerical_grad
from .mlp import MLP

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "gradcheck",
    "numerical_grad",
    "compare_grads",
    "GradcheckResult",
    "__version__",
]
