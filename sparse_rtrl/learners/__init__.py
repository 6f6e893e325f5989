"""Online gradient estimators ("learners"), one module per family, each with its kernel sibling.

``base`` (the life cycle every learner shares), ``exact`` (RTRL, BPTT,
TBPTT), ``snap`` (SnAp-n), ``uoro``, ``kronecker`` (KF-RTRL, reverse KF),
``local`` (RFLO, KeRNL, e-prop) and ``future`` (F-BPTT, DNI).
"""

from .base import Learner
from .exact import BPTT, RTRL, TBPTT
from .snap import SnAp
from .uoro import UORO
from .kronecker import KFRTRL, RKFRTRL
from .local import RFLO, EProp, KeRNL
from .future import DNI, DNIb, FutureBPTT

__all__ = ["BPTT", "DNI", "DNIb", "EProp", "FutureBPTT", "KFRTRL", "KeRNL", "Learner", "RFLO", "RKFRTRL", "RTRL",
           "SnAp", "TBPTT", "UORO"]
