"""Scoring from final representations computed once per evaluation (shared by GTC and the
multi-modal baselines).

The released multi-modal codes score with embeddings cached by the *last training batch*
(random timestep, stale parameters). Here the representations are computed in eval mode, once
per evaluation, and thrown away on every train/eval switch and on ``load_state_dict``.
"""

import torch


class CachedEvalScores:
    """Mixin for a RecBole recommender (listed before ``GeneralRecommender``).

    The model defines :meth:`compute_embeddings`; this class gives RecBole's ``predict`` and
    ``full_sort_predict`` (inner products) on top of it.
    """

    _eval_cache = None

    def compute_embeddings(self):
        """``(user (n_users, D), item (n_items, D))`` final representations for scoring."""
        raise NotImplementedError

    def train(self, mode=True):
        # Any switch between training and evaluation invalidates the evaluation embeddings,
        # so evaluation never reuses representations from stale parameters.
        self._eval_cache = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._eval_cache = None
        return super().load_state_dict(*args, **kwargs)

    def _eval_embeddings(self):
        """:meth:`compute_embeddings`, once per evaluation, in eval mode."""
        if self.training:
            raise RuntimeError(f"{type(self).__name__} scores are computed in eval mode (call model.eval() first)")
        if self._eval_cache is None:
            with torch.no_grad():
                self._eval_cache = self.compute_embeddings()
        return self._eval_cache

    def predict(self, interaction):
        users, items = self._eval_embeddings()
        return (users[interaction[self.USER_ID]] * items[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction):
        users, items = self._eval_embeddings()
        return users[interaction[self.USER_ID]] @ items.T
