"""A RecBole Dataset that also carries one frozen feature matrix per item modality.

The dataset's YAML names the modalities and their files, any number of them::

    modalities:
      image: image_feat.npy
      text: text_feat.npy

Each file is a 2-D float ``.npy`` next to the atomic files, with one row per item:
row ``r`` belongs to the item whose token is ``str(r)`` (the MMRec convention, kept
by ``python -m recbole_gtc.prepare``). RecBole re-maps tokens to internal ids
(0 is padding), so rows are re-ordered through the item-token map, never assumed aligned.
"""

import os

import numpy as np
import torch
from recbole.data.dataset import Dataset

from recbole_gtc.data.features import load_feature_matrix
from recbole_gtc.utils.errors import RecboleGTCError


class MultiModalDataset(Dataset):
    """:class:`recbole.data.dataset.Dataset` plus ``modality_feats``.

    Attributes:
        modality_feats (dict[str, torch.FloatTensor]): modality name -> features of
            shape ``(item_num, dim_m)``, row ``j`` = item with internal id ``j``;
            row 0 (padding) is zeros. Split copies made by ``build()`` share them.
    """

    def _from_scratch(self):
        super()._from_scratch()
        self.modality_feats = self._load_modalities()

    def _load_modalities(self):
        modalities = self.config["modalities"]
        if not isinstance(modalities, dict) or not modalities:
            raise RecboleGTCError(
                f"dataset '{self.dataset_name}': 'modalities' must map modality names to .npy files, got {modalities!r}"
            )
        tokens = self.field2id_token[self.iid_field][1:]
        feats = {}
        for name, filename in modalities.items():
            path = os.path.join(self.dataset_path, str(filename))
            feats[name] = _aligned_features(path, tokens)
            self.logger.info(f"modality [{name}]: {path} {tuple(feats[name].shape[1:])}-d")
            rows = feats[name][1:]
            if len(rows) > 1 and bool((rows == rows[0]).all()):  # trains, but on nothing
                what = "all zero" if not bool(rows[0].any()) else "one constant row"
                self.logger.warning(f"{path}: every item has the same {name} features ({what}): "
                                    f"the {name} modality carries no information")
        return feats

    def __str__(self):
        info = [super().__str__()]
        for name, feat in getattr(self, "modality_feats", {}).items():
            info.append(f"Modality {name}: {feat.shape[1]}-d features")
        return "\n".join(info)


def _aligned_features(path, tokens):
    """Load ``path`` and re-order its rows to internal item ids.

    Args:
        path (str): a 2-D float ``.npy`` whose row ``r`` is the item with token ``str(r)``.
        tokens (np.ndarray of str): item tokens of internal ids ``1..n``, in id order.

    Returns:
        torch.FloatTensor: ``(n + 1, dim)``; row 0 (padding) is zeros.

    Raises:
        RecboleGTCError: one line naming ``path`` and the problem.
    """
    raw = load_feature_matrix(path)
    if raw.shape[0] != len(tokens):
        raise RecboleGTCError(
            f"{path}: has {raw.shape[0]} rows but the dataset has {len(tokens)} items (one row per item expected)"
        )
    try:
        rows = np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError:
        raise RecboleGTCError(
            f"{path}: item tokens must be the integer row numbers of the feature files (MMRec ids)"
        ) from None
    if rows.min() < 0 or rows.max() >= raw.shape[0]:
        raise RecboleGTCError(f"{path}: item token {rows.max()} has no feature row (rows 0..{raw.shape[0] - 1})")
    aligned = np.zeros((len(tokens) + 1, raw.shape[1]), dtype=np.float32)
    aligned[1:] = raw[rows]
    return torch.from_numpy(aligned)
