"""sparse_rtrl: online training of sparse recurrent networks with RTRL and its approximations.

Importing the package is cheap: numba and scipy are imported, and kernels
compiled (then cached on disk), only when first used.
"""

from .cells import GRU, LSTM, Cell, CellStructure, Jacobians, SparseWeight, VanillaRNN
from .learners import (BPTT, DNI, KFRTRL, RFLO, RKFRTRL, RTRL, TBPTT, UORO, DNIb, EProp, FutureBPTT, KeRNL,
                       Learner, ReadoutOnly, SnAp)
from .gradcheck import GradCheckReport, gradcheck
from .metrics import alignment, estimator_variance
from .training.online import DivergenceError, train_online
from .training.optim import SGD, Adam, Optimizer
from .patterns import Pattern
from .training.readouts import LinearReadout
from .training.trainer import RunConfig, Trainer, TrainingDiverged
from .training import checkpoint, tasks  # modules: sr.tasks.Copy, sr.checkpoint.save, ...
from . import registry

__version__ = "0.1.0"

__all__ = [
    "BPTT", "DNI", "DNIb", "EProp", "FutureBPTT", "GRU", "GradCheckReport", "KFRTRL", "KeRNL", "LSTM", "RFLO",
    "RKFRTRL", "RTRL", "ReadoutOnly", "TBPTT", "UORO", "Adam", "Cell", "CellStructure", "DivergenceError", "Jacobians",
    "Learner", "LinearReadout", "Optimizer", "Pattern", "SGD", "SnAp", "SparseWeight", "VanillaRNN",
    "alignment", "estimator_variance", "gradcheck", "train_online", "RunConfig", "Trainer", "TrainingDiverged",
    "checkpoint", "registry", "tasks",
]
