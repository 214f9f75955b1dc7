"""Training: RecBole's ``Trainer`` with run folders, resume and per-user results
(:mod:`.trainer`), and the run folders themselves (:mod:`.run`)."""

from recbole_gtc.trainer.trainer import MMTrainer, build_trainer, get_trainer

__all__ = ["MMTrainer", "build_trainer", "get_trainer"]
