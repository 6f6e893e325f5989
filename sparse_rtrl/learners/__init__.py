"""Online gradient estimators ("learners"), one module per family, each with its kernel sibling.

``base`` (the life cycle every learner shares), ``exact`` (RTRL, BPTT,
TBPTT), ``snap`` (SnAp-n), ``uoro``, ``kronecker`` (KF-RTRL, reverse KF),
``local`` (RFLO, KeRNL, e-prop), ``future`` (F-BPTT, DNI) and
``readout_only`` (no gradient for the cell: the echo-state baseline). A new
learner is one module here, imported below; the learner table, the command
line, ``compare`` and the perf lists find it by its key.
"""

from .base import Learner
from .exact import BPTT, RTRL, TBPTT
from .snap import SnAp
from .uoro import UORO
from .kronecker import KFRTRL, RKFRTRL
from .local import RFLO, EProp, KeRNL
from .future import DNI, DNIb, FutureBPTT
from .readout_only import ReadoutOnly

__all__ = ["BPTT", "DNI", "DNIb", "EProp", "FutureBPTT", "KFRTRL", "KeRNL", "Learner", "RFLO", "RKFRTRL", "RTRL",
           "ReadoutOnly", "SnAp", "TBPTT", "UORO"]
