"""The torch oracle: the same models built from torch's own modules, with our weights copied in.

Each function takes one of our NumPy models (and its inputs), builds the torch equivalent from
``torch.nn.Linear`` / ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` and ``torch.nn.functional`` losses, runs
autograd, and returns ``(loss, grads)`` in our dict layout as NumPy arrays. Nothing here re-types our
backward formulas: the gradients are autograd's.

It installs as ``manual_bp.reference`` (from the repository's ``reference/`` folder): importing it imports
torch; ``import manual_bp`` itself never does. ``loss_and_grad`` is the one entry point that
``manual_bp.harness`` calls for every model family.
"""

from . import trace as trace  # model.trace's oracle: reference.trace.trace
from .mlp import build_mlp, mlp_jvp, mlp_loss_and_grad, mlp_module
from .recurrent import (
    build_layers,
    build_recurrent,
    recurrent_forward,
    recurrent_jvp,
    recurrent_loss_and_grad,
    recurrent_module_jvp,
    recurrent_module_vjp,
    recurrent_train_chunks,
    recurrent_vanishing,
)
from .recurrent_second_order import recurrent_gvp, recurrent_hvp
from .second_order import mlp_gvp, mlp_hvp


def loss_and_grad(model, X, Y, dtype=None, **kwargs):
    """Autograd's ``(loss, grads)`` for any manual_bp model, in our names (dispatch by the batch axis)."""
    if model.BATCH_AXIS == 0:
        return mlp_loss_and_grad(model, X, Y, dtype=dtype, **kwargs)
    return recurrent_loss_and_grad(model, X, Y, dtype=dtype, **kwargs)


__all__ = [
    "loss_and_grad",
    "build_mlp",
    "mlp_module",
    "mlp_loss_and_grad",
    "mlp_jvp",
    "mlp_hvp",
    "mlp_gvp",
    "build_recurrent",
    "build_layers",
    "recurrent_module_vjp",
    "recurrent_module_jvp",
    "recurrent_hvp",
    "recurrent_gvp",
    "recurrent_loss_and_grad",
    "recurrent_forward",
    "recurrent_jvp",
    "recurrent_vanishing",
    "recurrent_train_chunks",
]
