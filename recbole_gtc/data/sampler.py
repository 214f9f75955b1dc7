"""The published (MMRec) evaluation protocol as a RecBole sampler.

RecBole's :class:`~recbole.sampler.Sampler` decides two things for full-sort
evaluation and BPR training through ``used_ids`` and ``_uni_sampling``:

* which items are masked when ranking a user's test items (RecBole: the user's
  training *and* validation items), and
* where training negatives come from (RecBole: every item id).

MMRec (and the GTC paper) mask only training items at test time, so a user's
validation items stay rankable, and draw training negatives only from items seen
in training. :class:`MMRecSampler` changes exactly those two things, so RecBole's
own dataloaders, trainers and evaluator -- and therefore RecBole's built-in
baselines -- run under the same protocol.
"""

import numpy as np
from recbole.sampler import Sampler


class MMRecSampler(Sampler):
    """Sampler for ``eval_protocol: mmrec``. Phases must be ``["train", "valid", "test"]``."""

    def __init__(self, phases, datasets, distribution="uniform", alpha=1.0):
        if list(phases) != ["train", "valid", "test"]:
            raise ValueError(f"MMRecSampler needs phases ['train', 'valid', 'test'], got {phases}")
        train_items = datasets[0].inter_feat[datasets[0].iid_field].numpy()
        #: internal ids of the items with at least one training interaction, sorted.
        self.train_item_ids = np.unique(train_items)
        super().__init__(phases, datasets, distribution, alpha)

    def _get_candidates_list(self):
        # popularity sampling: training interactions only
        return list(self.datasets[0].inter_feat[self.iid_field].numpy())

    def _uni_sampling(self, sample_num):
        return self.train_item_ids[np.random.randint(0, len(self.train_item_ids), sample_num)]

    def get_used_ids(self):
        """Per phase, per user, the set of items that are never negatives / are masked:
        train -> train items; valid -> train + valid; test -> train + test (validation
        items are not masked at test time)."""
        train, valid, test = (self._user_items(d) for d in self.datasets)
        used = {
            "train": train,
            "valid": np.array([t | v for t, v in zip(train, valid)]),
            "test": np.array([t | s for t, s in zip(train, test)]),
        }
        for user, items in enumerate(train):
            if len(items) >= len(self.train_item_ids) and len(items) > 0:
                raise ValueError(
                    f"user {user} has interacted with every training item: no negative can be sampled "
                    f"(set `user_inter_num_interval` to filter such users)"
                )
        return used

    def _user_items(self, dataset):
        sets = np.array([set() for _ in range(self.user_num)])
        for uid, iid in zip(dataset.inter_feat[self.uid_field].numpy(), dataset.inter_feat[self.iid_field].numpy()):
            sets[uid].add(iid)
        return sets
