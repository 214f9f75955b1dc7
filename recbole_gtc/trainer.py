"""RecBole's Trainer plus the one thing it lacks: a per-epoch hook for the model."""

from recbole.trainer import Trainer


class MMTrainer(Trainer):
    """:class:`recbole.trainer.Trainer` that calls ``model.on_epoch_start(epoch_idx)``
    (when the model defines it) before each training epoch.

    GTC needs it to re-draw the padding of its user-user graph once per epoch;
    RecBole's trainer has no such hook. Everything else is RecBole's trainer,
    so baselines trained with it behave exactly as under RecBole.
    """

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        hook = getattr(self.model, "on_epoch_start", None)
        if callable(hook):
            hook(epoch_idx)
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
