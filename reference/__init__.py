"""The torch oracle: the same models built from torch's own modules, with our weights copied in.

Each function takes one of our NumPy models (and its inputs), builds the torch equivalent from
``torch.nn.Linear`` / ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` and ``torch.nn.functional`` losses, runs
autograd, and returns ``(loss, grads)`` in our dict layout as NumPy arrays. Nothing here re-types our
backward formulas: the gradients are autograd's.

Importing this package imports torch; ``manual_bp`` itself never does.
"""

from .mlp import mlp_jvp, mlp_loss_and_grad
from .recurrent import (
    build_recurrent,
    recurrent_forward,
    recurrent_jvp,
    recurrent_loss_and_grad,
    recurrent_train_chunks,
    recurrent_vanishing,
)

__all__ = [
    "mlp_loss_and_grad",
    "mlp_jvp",
    "build_recurrent",
    "recurrent_loss_and_grad",
    "recurrent_forward",
    "recurrent_jvp",
    "recurrent_vanishing",
    "recurrent_train_chunks",
]
