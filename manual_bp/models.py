"""The model registry: every model class of the package, by name, in one place.

Checkpoints record a model by its class name and rebuild it from here; the command line, the tests, the
benchmarks and ``manual-bp check`` read the same table. A class here has ``config()``, a ``params`` dict,
``loss_and_grad`` and ``BATCH_AXIS`` (the axis of X and Y that indexes samples: 0 for the MLP, 1 for the
time-major recurrent nets).
"""

from __future__ import annotations

from .gru import GRU
from .lstm import LSTM
from .mlp import MLP
from .rnn import RNN

#: class name -> class, in the order tables list them
MODELS = {"MLP": MLP, "RNN": RNN, "LSTM": LSTM, "GRU": GRU}

#: the recurrent subset (batch along axis 1, time along axis 0)
RECURRENT_MODELS = {name: cls for name, cls in MODELS.items() if cls.BATCH_AXIS == 1}


def model_class(name: str) -> type:
    """The class registered as ``name`` (case-insensitive: ``"lstm"`` is ``LSTM``)."""
    if not isinstance(name, str) or name.upper() not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}; got {name!r}")
    return MODELS[name.upper()]


def model_name(model) -> str:
    """The registered name of ``model``'s exact class; TypeError for anything else (a subclass included)."""
    name = type(model).__name__
    if MODELS.get(name) is not type(model):
        raise TypeError(
            f"model must be a manual_bp model class ({', '.join(MODELS)}) so that it can be rebuilt by name; "
            f"got {type(model).__module__}.{name}"
        )
    return name
