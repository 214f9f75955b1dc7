"""Evaluation beyond RecBole's means: each test user's metric values (:mod:`.per_user`)."""

from recbole_gtc.evaluator.per_user import PerUserRecorder, per_user_metrics

__all__ = ["PerUserRecorder", "per_user_metrics"]
