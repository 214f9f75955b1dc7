"""What the multi-modal models (GTC, DRAGON, FREEDOM, LGMRec, VBPR) share.

* :class:`MultiModalRecommender`: a RecBole ``GeneralRecommender`` that reads the
  dataset's modality features (raising :class:`RecboleGTCError` when there are none),
  reads its config keys (their types and ranges are checked before, by
  :mod:`recbole_gtc.config.validation`, from each model's ``config_rules``), and scores from
  representations computed **once per evaluation in eval mode** (invalidated by
  ``train()``/``load_state_dict()``), never from embeddings cached by the last training batch.
* Graph helpers over the training split: the binary interaction matrix, the
  symmetric-normalised user-item adjacency (``bipartite.py``) and the item kNN graph of the
  raw features (``graphs.py``: chunked, never a dense ``I x I``), padded so that row/column 0
  (RecBole's padding item) has no edges.
* :func:`bpr_loss`, the BPR term of the MMRec models as released (VBPR's is RecBole's own
  :class:`~recbole.model.loss.BPRLoss`).
"""

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_gtc.config.rules import integer, number, string
from recbole_gtc.model.layers.bipartite import binary_matrix
from recbole_gtc.model.layers.graphs import item_item_graph
from recbole_gtc.model.layers.scoring import CachedEvalScores
from recbole_gtc.utils.errors import RecboleGTCError

#: Keys named as in MMRec (https://github.com/enoche/MMRec) that its multi-modal
#: baselines (VBPR, DRAGON, FREEDOM, LGMRec, ...) read: their ``config_rules`` start from it.
MMREC_KEYS = {
    "embedding_size": integer(1),
    "feat_embed_dim": integer(1),
    "reg_weight": number(0),
    "dropout": number(0, 1, high_open=True),
    "knn_k": integer(1),
    "mm_image_weight": number(0, 1),
    "n_mm_layers": integer(0),
    "n_ui_layers": integer(0),
    "n_layers": integer(0),
    "lambda_coeff": number(0, 1),
    "cl_weight": number(0),
    "n_hyper_layer": integer(1),
    "hyper_num": integer(1),
    "keep_rate": number(0, 1, low_open=True),
    "alpha": number(0),
    "user_graph_k": integer(1),
    "knn_chunk_size": integer(1),
    "graph_cache_dir": string(optional=True),
}


class MultiModalRecommender(CachedEvalScores, GeneralRecommender):
    """Base class: subclasses implement :meth:`compute_embeddings` and ``calculate_loss``.

    Attributes:
        modalities (list of str): modality names, in the dataset YAML's order.
    """

    input_type = InputType.PAIRWISE
    #: Config keys the model needs (each must be set, by the model YAML or the user).
    required_keys = ()
    #: Config keys the model reads that may be ``~`` (None).
    optional_keys = ()
    #: ``{key: rule}`` for :mod:`recbole_gtc.config.validation`: each key's type and range, checked
    #: before the model is built; the model itself does not check them again.
    config_rules = {}
    #: Whether the model trains under ``mixed_precision: bf16 | fp16`` (autocast). False: its
    #: sparse products refuse low-precision operands in the first backward, so the
    #: configuration is refused before training (recbole_gtc.config.validation.check_precision).
    supports_mixed_precision = False

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        feats = getattr(dataset, "modality_feats", None)
        name = type(self).__name__
        if not feats:
            raise RecboleGTCError(
                f"{name} needs item modality features: dataset '{config['dataset']}' has no 'modalities' in its YAML"
            )
        missing = [k for k in self.required_keys if config[k] is None]
        if missing:
            raise RecboleGTCError(f"{name} config is missing {missing} (see properties/model/{name}.yaml)")
        for key in self.required_keys + self.optional_keys:
            setattr(self, key, config[key])
        self.modalities = list(feats)
        self.seed = int(config["seed"] or 0)

    def require_one_width(self, why):
        """Refuse ``feat_embed_dim != embedding_size`` (MMRec's two keys), for models that add
        or compare projected features and ID embeddings; ``why`` says what needs it."""
        if self.feat_embed_dim != self.embedding_size:
            raise RecboleGTCError(f"{type(self).__name__} {why}: feat_embed_dim ({self.feat_embed_dim}) "
                                  f"must equal embedding_size ({self.embedding_size})")

    # ------------------------------------------------------------------ graphs
    @staticmethod
    def training_pairs(dataset):
        """``(users, items)`` int64 arrays of the training interactions (the dataset the model is built with)."""
        return dataset.inter_feat[dataset.uid_field].numpy(), dataset.inter_feat[dataset.iid_field].numpy()

    def interaction_matrix(self, dataset):
        """Binary training matrix ``R``, scipy CSR ``(n_users, n_items)``; duplicates count once."""
        users, items = self.training_pairs(dataset)
        return binary_matrix(users, items, self.n_users, self.n_items)

    def modality_weights(self, image_weight):
        """Item-graph weight per modality, MMRec's ``mm_image_weight`` rule generalised.

        Two modalities image + text: image ``w``, text ``1 - w`` (as released). Any other
        set: ``image`` (when present, with others) gets ``w`` and the other modalities share
        ``1 - w`` equally; without an ``image`` modality all get ``1/M``.
        """
        mods = self.modalities
        if len(mods) == 1:
            return {mods[0]: 1.0}
        if "image" not in mods:
            return {m: 1.0 / len(mods) for m in mods}
        rest = (1.0 - float(image_weight)) / (len(mods) - 1)
        return {m: float(image_weight) if m == "image" else rest for m in mods}

    def item_knn_graph(self, feats, k, weights, chunk_size=1024, cache_dir=None):
        """``S = sum_m weights[m] * kNN_k(X_m)`` over real items, as a sparse ``(n_items, n_items)``.

        Every kept edge of modality m weighs ``weights[m] / k`` (MMRec's ``D^-1/2 A D^-1/2``
        of a graph whose rows all have k entries). Row and column 0 (padding) are empty.

        Args:
            feats (dict): modality -> ``(n_items, D_m)`` raw features (row 0 padding).
        """
        s = item_item_graph({m: feats[m][1:] for m in self.modalities}, k, weights,
                            chunk_size=chunk_size, cache_dir=cache_dir)
        return torch.sparse_coo_tensor(s.indices() + 1, s.values(), (self.n_items, self.n_items)).coalesce()


def bpr_loss(u, pos, neg):
    """``-mean log sigmoid(<u, pos> - <u, neg>)``, through ``logsigmoid`` as MMRec's DRAGON,
    FREEDOM and LGMRec compute it. RecBole's :class:`~recbole.model.loss.BPRLoss` takes
    ``log(1e-10 + sigmoid(.))``, which rounds differently and stops at ``-log(1e-10)`` for badly
    ordered pairs, so these models keep the released form.

    Args:
        u, pos, neg (Tensor): ``(B, D)`` rows of the batch's users, positive and negative items.

    Returns:
        Tensor: scalar.
    """
    return -F.logsigmoid((u * pos).sum(-1) - (u * neg).sum(-1)).mean()


def sparse_from_scipy(matrix):
    """scipy sparse -> coalesced float32 torch sparse COO of the same shape."""
    coo = matrix.tocoo()
    index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(index, torch.from_numpy(coo.data.astype(np.float32)), coo.shape).coalesce()


def lightgcn_mean(adj, x, n_layers):
    """LightGCN's layer combination: ``mean(x, A x, ..., A^L x)``.

    Args:
        adj (Tensor): sparse ``(N, N)``.
        x (Tensor): ``(N, d)``.
        n_layers (int): L.

    Returns:
        Tensor: ``(N, d)``.
    """
    out, h = x, x
    for _ in range(n_layers):
        h = torch.sparse.mm(adj, h)
        out = out + h
    return out / (n_layers + 1)


def power_propagate(adj, x, n_layers):
    """``A^L x`` (the last layer only, as MMRec's item-graph and modality-graph steps)."""
    for _ in range(n_layers):
        x = torch.sparse.mm(adj, x)
    return x
