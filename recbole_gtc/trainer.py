"""RecBole's Trainer plus the one thing it lacks: a per-epoch hook for the model."""

import time

from recbole.trainer import Trainer


class MMTrainer(Trainer):
    """:class:`recbole.trainer.Trainer` that calls ``model.on_epoch_start(epoch_idx)``
    (when the model defines it) before each training epoch.

    GTC needs it to re-draw the padding of its user-user graph once per epoch;
    RecBole's trainer has no such hook. It also records each training epoch's
    wall-clock seconds in ``epoch_seconds`` (for side-by-side cost comparisons).
    Everything else is RecBole's trainer, so baselines trained with it behave
    exactly as under RecBole.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.epoch_seconds = []

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = time.perf_counter()
        hook = getattr(self.model, "on_epoch_start", None)
        if callable(hook):
            hook(epoch_idx)
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.epoch_seconds.append(time.perf_counter() - start)
        return loss
