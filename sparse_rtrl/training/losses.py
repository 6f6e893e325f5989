"""The readout's losses: one table, and one implementation (compiled, in ``_readout_kernels``).

Each loss is a class in the loss table (``sparse_rtrl.registry.LOSSES``),
naming how its targets look, the metric a task reports for it, and the code by
which the compiled readout knows it. Training (``LinearReadout.step``), the
fused loop and evaluation (``LinearReadout.loss``) all compute it with the
same compiled function, ``_readout_kernels.loss_and_error``.
"""

from typing import ClassVar

from ..registry import Registered

__all__ = ["BERNOULLI", "Bernoulli", "CROSS_ENTROPY", "CrossEntropy", "Loss", "MSE", "MeanSquaredError"]


class Loss(Registered):
    """A loss of the readout's outputs ``y`` (the table's entries are classes; they hold no state)."""

    _family = "loss"
    #: How the compiled readout knows this loss.
    code: ClassVar[int] = None
    #: ``"real"``: ``n_out`` reals per stream; ``"class"``: one int per stream, ``-1`` for no target.
    targets: ClassVar[str] = None
    #: For real targets: the closed interval ``(low, high)`` they must lie in, or None for any finite real.
    target_range: ClassVar[tuple] = None

    @classmethod
    def check_targets(cls, arr, name):
        """Refuse real targets ``arr`` (already finite) outside ``target_range``, naming the argument ``name``."""
        if cls.target_range is None or arr.size == 0:
            return
        low, high = cls.target_range
        if arr.min() < low or arr.max() > high:
            raise ValueError(f"{name} must lie in [{low:g}, {high:g}] for the {cls.key} loss, got values in "
                             f"[{float(arr.min()):g}, {float(arr.max()):g}]")


class MeanSquaredError(Loss, key="mse"):
    """``L = 0.5 |y - target|^2``, summed over the outputs."""

    code = 0
    targets = "real"


class CrossEntropy(Loss, key="cross_entropy"):
    """Softmax cross-entropy (nats) of the logits ``y`` against a class; a class of -1 is no target."""

    code = 1
    targets = "class"


class Bernoulli(Loss, key="bernoulli"):
    """Sigmoid / Bernoulli cross-entropy (nats) of the logits ``y`` against reals in [0, 1] (pixels).

    ``p = sigmoid(y)``; ``L = -sum_k [t_k log p_k + (1 - t_k) log(1 - p_k)]``,
    computed as ``sum_k softplus(y_k) - t_k y_k`` (finite for any finite
    logit); ``dL/dy = p - t``.
    """

    code = 2
    targets = "real"
    target_range = (0.0, 1.0)


#: The codes, as compiled code reads them (module constants are frozen when a kernel compiles).
MSE = MeanSquaredError.code
CROSS_ENTROPY = CrossEntropy.code
BERNOULLI = Bernoulli.code
