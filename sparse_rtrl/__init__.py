"""sparse_rtrl: online training of sparse recurrent networks with RTRL and its approximations.

Importing the package is cheap: numba and scipy are imported, and kernels
compiled (then cached on disk), only when first used.
"""

from .cells import GRU, LSTM, Cell, CellStructure, Jacobians, SparseWeight, VanillaRNN
from .learners import BPTT, RTRL, TBPTT, UORO, Learner, SnAp
from .gradcheck import GradCheckReport, gradcheck
from .patterns import Pattern

__version__ = "0.1.0"

__all__ = [
    "BPTT", "GRU", "GradCheckReport", "LSTM", "RTRL", "TBPTT", "UORO", "Cell", "CellStructure", "Jacobians",
    "Learner", "Pattern", "SnAp", "SparseWeight", "VanillaRNN", "gradcheck",
]
