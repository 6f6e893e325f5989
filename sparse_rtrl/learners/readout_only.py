"""ReadoutOnly: the recurrent weights stay as they are; only the readout learns."""

from .base import Learner


class ReadoutOnly(Learner, key="readout_only"):
    """No gradient for the cell: the baseline in which only the readout learns.

    This is Marschall, Cho & Savin (2020)'s output-weights-only baseline (the
    recurrent network fixed at its initial weights) and the training rule of
    an echo-state network (Jaeger 2001), whose reservoir is never trained:
    paired with ``sr.LinearReadout`` and an optimiser in ``train_online`` or
    the trainer, the readout follows its own exact gradient online (LMS for
    the squared error) while ``grad()`` is zero for every cell parameter, so
    the optimiser leaves the cell alone (SGD, momentum and Adam all take a
    step of exactly zero on a zero gradient).

    Parameters
    ----------
    cell : Cell
        Any cell; for an echo-state network, a ``VanillaRNN`` whose recurrent
        weights have been scaled to the spectral radius you want.
    batch_size : int, optional
    parallel : bool, optional
        Spread the streams of a batch over the cores (same results).

    Notes
    -----
    ``forward`` steps the cell without its Jacobians; ``backward`` takes the
    credit and discards it; nothing is stored but the state. ``O(nnz)`` per
    stream and step: the cost of running the network.
    """

    facing = "none"
    structure = "none"
    needs_jacobians = False

    def _backward(self, c):
        pass  # no influence, no trace: the credit has nowhere to go

    def _loop_state(self, steps):
        from ._loop_kernels import NoLearning

        return NoLearning(self._acc)

    @property
    def name(self):
        return "readout only"
