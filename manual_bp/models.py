"""The registry: every model, optimizer and schedule class of the package, by name, in one place.

Checkpoints record a model (and its optimizer and schedule) by class name and rebuild them from here; the
command line, the tests, the benchmarks and ``manual-bp check`` read the same tables. A model class has
``config()``, a ``params`` dict, ``loss_and_grad``, ``validate`` and ``BATCH_AXIS`` (the axis of X and Y that
indexes samples: 0 for the MLP, 1 for the time-major recurrent nets). An optimizer class has ``config()``,
``state_dict()`` and ``load_state_dict()``; one with ``takes_model = True`` (Hessian-free) is built on the
model and steps on a batch, the others on ``model.params`` and step on gradients.
"""

from __future__ import annotations

from .gru import GRU
from .hessian_free import HessianFree
from .lstm import LSTM
from .mlp import MLP
from .optim import SGD, Adam, AdamW, ExponentialLR, StepLR
from .rnn import RNN

#: class name -> class, in the order tables list them
MODELS = {"MLP": MLP, "RNN": RNN, "LSTM": LSTM, "GRU": GRU}

#: the recurrent subset (batch along axis 1, time along axis 0)
RECURRENT_MODELS = {name: cls for name, cls in MODELS.items() if cls.BATCH_AXIS == 1}

#: class name -> optimizer class (first order on gradients, and Hessian-free on batches)
OPTIMIZERS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW, "HessianFree": HessianFree}

#: class name -> learning-rate schedule class
SCHEDULERS = {"StepLR": StepLR, "ExponentialLR": ExponentialLR}


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
