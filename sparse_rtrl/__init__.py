"""sparse_rtrl: online training of sparse recurrent networks with RTRL and its approximations.

Importing the package is cheap: numba and scipy are imported, and kernels
compiled (then cached on disk), only when first used.
"""

from .cells import GRU, LSTM, Cell, CellStructure, Jacobians, SparseWeight, VanillaRNN
from .learners import BPTT, RTRL, TBPTT, UORO, Learner, SnAp
from .future import DNI, DNIb, FutureBPTT
from .gradcheck import GradCheckReport, gradcheck
from .kronecker import KFRTRL, RKFRTRL
from .local import RFLO, EProp, KeRNL
from .metrics import alignment, estimator_variance
from .online import DivergenceError, train_online
from .optim import SGD, Adam, Optimizer
from .patterns import Pattern
from .readouts import LinearReadout
from .trainer import RunConfig, Trainer, TrainingDiverged
from . import checkpoint, registry, tasks  # noqa: E402  (modules: sr.tasks.Copy, sr.checkpoint.save, ...)

__version__ = "0.1.0"

__all__ = [
    "BPTT", "DNI", "DNIb", "EProp", "FutureBPTT", "GRU", "GradCheckReport", "KFRTRL", "KeRNL", "LSTM", "RFLO",
    "RKFRTRL", "RTRL", "TBPTT", "UORO", "Adam", "Cell", "CellStructure", "DivergenceError", "Jacobians",
    "Learner", "LinearReadout", "Optimizer", "Pattern", "SGD", "SnAp", "SparseWeight", "VanillaRNN",
    "alignment", "estimator_variance", "gradcheck", "train_online", "RunConfig", "Trainer", "TrainingDiverged",
    "checkpoint", "registry", "tasks",
]
