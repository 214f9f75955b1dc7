"""FREEDOM: A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
Recommendation (Zhou & Shen, ACM MM 2023), as computed by MMRec's released ``freedom.py``,
for any number M of modalities.

* Frozen item-item graph (Sec. 3.1): ``S = sum_m w_m kNN_k(X_m)`` of the raw features,
  built once (never learned), ``w_image = mm_image_weight``.
* Denoised user-item graph (Sec. 3.2): each epoch keeps ``floor(E (1 - dropout))`` of the E
  training edges, sampled without replacement with probability proportional to
  ``1 / sqrt(d_u d_i)`` (degree-sensitive edge pruning, Eq. 6-7), and re-normalises the kept
  graph ``D^-1/2 A D^-1/2`` by the kept degrees. Evaluation uses the full graph.
* Representations (Sec. 3.3): LightGCN over the (pruned) user-item graph,
  ``[u ; i] = mean_l A^l [E_u ; E_i]`` (l = 0..n_ui_layers), and the ID embeddings propagated
  over the frozen item graph, ``h_i = S^{n_mm_layers} E_i``: item = ``i + h_i``.
* Loss (Sec. 3.4, Eq. 11): ``BPR(u, i) + reg_weight * sum_m BPR(u, proj_m(X_m))`` (natural log);
  ``proj_m`` is a linear map of modality m's features to d.
"""

import torch
import torch.nn as nn

from recbole_gtc.config.rules import boolean
from recbole_gtc.model.abstract_recommender import (MMREC_KEYS, MultiModalRecommender, bpr_loss, lightgcn_mean,
                                                    power_propagate)
from recbole_gtc.model.layers.bipartite import normalized_bipartite_adjacency
from recbole_gtc.model.layers.graphs import epoch_generator


def degree_sensitive_values(users, items, n_users, n_items):
    """``1 / sqrt(d_u d_i)`` for every edge, degrees counted over the given edges.

    Args:
        users, items (LongTensor): ``(E,)`` distinct edges of the bipartite graph.

    Returns:
        Tensor: ``(E,)`` float32.
    """
    deg_u = torch.bincount(users, minlength=n_users).float()
    deg_i = torch.bincount(items, minlength=n_items).float()
    return (deg_u[users] * deg_i[items]).rsqrt()


def sample_edges(values, n_keep, generator=None):
    """Indices of ``n_keep`` distinct edges, drawn one after another without replacement, each
    draw with probability proportional to ``values`` among the edges not drawn yet.

    Args:
        values (Tensor): ``(E,)`` positive edge weights.
        n_keep (int): ``0 <= n_keep <= E``.
        generator (torch.Generator, optional): CPU generator.

    Returns:
        LongTensor: ``(n_keep,)``.
    """
    if n_keep <= 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.multinomial(values.cpu(), n_keep, replacement=False, generator=generator)


def pruned_adjacency(users, items, keep, n_users, n_items):
    """Symmetric ``D^-1/2 A D^-1/2`` of the kept edges, degrees counted over the kept edges.

    Args:
        users, items (LongTensor): ``(E,)`` all edges; keep (LongTensor): indices of the kept ones.

    Returns:
        Tensor: sparse ``(U + I, U + I)``, coalesced.
    """
    u, i = users[keep], items[keep]
    values = degree_sensitive_values(u, i, n_users, n_items)
    index = torch.stack([torch.cat([u, i + n_users]), torch.cat([i + n_users, u])])
    n = n_users + n_items
    return torch.sparse_coo_tensor(index, torch.cat([values, values]), (n, n)).coalesce()


class FREEDOM(MultiModalRecommender):
    r"""FREEDOM as a RecBole general recommender.

    Attributes (after ``__init__``):
        norm_adj (sparse Tensor): ``(U + I, U + I)`` full normalised training graph (evaluation).
        masked_adj (sparse Tensor): this epoch's pruned graph (training), re-drawn by ``on_epoch_start``.
        item_graph (sparse Tensor): ``(I, I)`` frozen item kNN graph.
        edge_users, edge_items (LongTensor): ``(E,)`` distinct training edges; edge_values their
            ``1/sqrt(d_u d_i)`` sampling weights.
    """

    required_keys = ("embedding_size", "feat_embed_dim", "reg_weight", "n_ui_layers", "n_mm_layers", "knn_k",
                     "mm_image_weight", "dropout", "knn_chunk_size", "train_features")
    optional_keys = ("graph_cache_dir",)
    config_rules = dict(MMREC_KEYS, train_features=boolean())

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.require_one_width("scores users against projected features")
        feats = dataset.modality_feats
        d = self.embedding_size
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_id_embedding = nn.Embedding(self.n_items, d)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        # Modality features: the released code fine-tunes them through the modality BPR terms
        # (train_features: True); False keeps them frozen.
        self.features = nn.ParameterDict(
            {m: nn.Parameter(feats[m].float().clone(), requires_grad=bool(self.train_features)) for m in self.modalities}
        )
        self.projections = nn.ModuleDict({m: nn.Linear(feats[m].shape[1], self.feat_embed_dim) for m in self.modalities})

        users, items = self.training_pairs(dataset)
        self.register_buffer(
            "norm_adj", normalized_bipartite_adjacency(users, items, self.n_users, self.n_items), persistent=False
        )
        r = self.interaction_matrix(dataset).tocoo()  # distinct edges
        self.edge_users = torch.from_numpy(r.row.astype("int64"))
        self.edge_items = torch.from_numpy(r.col.astype("int64"))
        self.edge_values = degree_sensitive_values(self.edge_users, self.edge_items, self.n_users, self.n_items)
        # Frozen item graph from the raw (initial) features.
        self.register_buffer(
            "item_graph",
            self.item_knn_graph(feats, self.knn_k, self.modality_weights(self.mm_image_weight),
                                chunk_size=self.knn_chunk_size, cache_dir=self.graph_cache_dir),
            persistent=False,
        )
        self.register_buffer("masked_adj", self.norm_adj, persistent=False)
        self.on_epoch_start(0)

    def n_kept_edges(self):
        """``floor(E * (1 - dropout))`` edges kept per epoch."""
        return int(len(self.edge_values) * (1.0 - float(self.dropout)))

    def on_epoch_start(self, epoch_idx):
        """Degree-sensitive edge pruning, re-drawn once per epoch from a (seed, epoch) generator."""
        if self.dropout <= 0:
            self.masked_adj = self.norm_adj
            return
        generator = epoch_generator(self.seed, epoch_idx)
        keep = sample_edges(self.edge_values, self.n_kept_edges(), generator=generator)
        adj = pruned_adjacency(self.edge_users, self.edge_items, keep, self.n_users, self.n_items)
        self.masked_adj = adj.to(self.norm_adj.device)

    def forward(self, adj):
        """Representations over the user-item graph ``adj``.

        Returns:
            (Tensor, Tensor): users ``(n_users, d)`` and items ``(n_items, d)``.
        """
        h = power_propagate(self.item_graph, self.item_id_embedding.weight, self.n_mm_layers)
        ego = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight])
        users, items = torch.split(lightgcn_mean(adj, ego, self.n_ui_layers), [self.n_users, self.n_items])
        return users, items + h

    def calculate_loss(self, interaction):
        user = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        users, items = self.forward(self.masked_adj)
        u = users[user]
        loss = bpr_loss(u, items[pos], items[neg])
        modal = 0.0
        for m in self.modalities:
            # Only the batch's items are projected (the released code projects every item each step).
            proj = self.projections[m]
            modal = modal + bpr_loss(u, proj(self.features[m][pos]), proj(self.features[m][neg]))
        return loss + self.reg_weight * modal

    def compute_embeddings(self):
        return self.forward(self.norm_adj)
