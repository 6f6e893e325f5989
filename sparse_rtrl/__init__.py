"""sparse_rtrl: online training of sparse recurrent networks with RTRL and its approximations.

Importing the package is cheap: numba and scipy are imported, and kernels
compiled (then cached on disk), only when first used.
"""

import logging
import sys

from .cells import GRU, LSTM, Cell, CellStructure, Jacobians, SparseWeight, VanillaRNN
from .learners import (BPTT, DNI, KFRTRL, RFLO, RKFRTRL, RTRL, TBPTT, UORO, DNIb, EProp, FutureBPTT, KeRNL,
                       Learner, ReadoutOnly, SnAp)
from .gradcheck import GradCheckReport, gradcheck
from .metrics import alignment, estimator_variance
from .compare import stream_credits
from .training.online import DivergenceError, train_online
from .training.optim import SGD, Adam, Optimizer
from .patterns import Pattern
from .ptncn import PTNCN
from .training.ptncn_online import train_ptncn
from .training.readouts import LinearReadout
from .training.callbacks import Callback, CSVLogger, EarlyStopping, TensorBoardLogger
from .training.trainer import RunConfig, Trainer, TrainingDiverged, TrainingInterrupted
from .training.sweep import SweepLocked, SweepResults, sweep, sweep_results
from .training import checkpoint, schedules, tasks  # modules: sr.tasks.Copy, sr.checkpoint.save, sr.schedules.Cosine
from . import registry

# ``import sparse_rtrl.tasks`` (and ``from sparse_rtrl.checkpoint import save``) name the same modules.
for _module in (checkpoint, schedules, tasks):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
del _module

__version__ = "0.1.0"

# Messages (progress lines without a terminal, resume notes) go to the "sparse_rtrl" logger; the library
# leaves their display to the application, as logging's HOWTO asks (the command line shows them).
logging.getLogger("sparse_rtrl").addHandler(logging.NullHandler())

__all__ = [
    "Callback", "CSVLogger", "EarlyStopping", "TensorBoardLogger",
    "BPTT", "DNI", "DNIb", "EProp", "FutureBPTT", "GRU", "GradCheckReport", "KFRTRL", "KeRNL", "LSTM", "RFLO",
    "RKFRTRL", "RTRL", "ReadoutOnly", "TBPTT", "UORO", "Adam", "Cell", "CellStructure", "DivergenceError", "Jacobians",
    "Learner", "LinearReadout", "Optimizer", "PTNCN", "Pattern", "SGD", "SnAp", "SparseWeight", "VanillaRNN",
    "alignment", "estimator_variance", "gradcheck", "stream_credits", "train_online", "train_ptncn", "RunConfig",
    "Trainer", "TrainingDiverged", "TrainingInterrupted", "checkpoint", "registry", "schedules", "tasks",
    "SweepLocked", "SweepResults", "sweep", "sweep_results",
]
