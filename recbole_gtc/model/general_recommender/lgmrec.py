"""LGMRec: Local and Global Graph Learning for Multimodal Recommendation (Guo et al., AAAI 2024),
as computed by MMRec's released ``lgmrec.py``, for any number M of modalities.

With the binary training matrix R ``(U, I)`` and the normalised user-item graph A:

* Local graph embeddings (Sec. 3.2):
  - collaborative (CGE, Eq. 1): ``E^c = mean_l A^l [E_u ; E_i]`` (l = 0..n_ui_layers; ``cf_model: mf``
    uses ``[E_u ; E_i]``);
  - modality m (MGE, Eq. 2-3): items ``F_m = X_m W_m``, users the mean of their items' ``F_m``,
    then ``E^m = A^{n_mm_layers} [F_u ; F_m]``;
  - local ``E^L = E^c + sum_m normalize(E^m)``.
* Global hypergraph embeddings (Sec. 3.3, Eq. 4-7), per modality m with ``hyper_num`` hyperedges:
  item-hyperedge dependencies ``H_i = gumbel_softmax(X_m V_m / tau)`` ``(I, H)``, user-hyperedge
  dependencies ``H_u = gumbel_softmax(R X_m V_m / tau)`` ``(U, H)``, both with dropout
  ``1 - keep_rate`` in training; ``n_hyper_layer`` layers of
  ``Z = H_i^T E_i ; E_i <- H_i Z ; E_u <- H_u Z`` from the collaborative item embeddings;
  global ``E^G = sum_m [E_u^m ; E_i^m]``.
* Fusion (Eq. 8): ``E = E^L + alpha * normalize(E^G)``; score ``<e_u, e_i>``.
* Loss (Eq. 9-11): ``BPR + cl_weight * L_HCL + reg_weight * (||e_u|| + ||e_p|| + ||e_n||) / B``
  with the hypergraph contrastive term ``L_HCL``: InfoNCE (temperature ``tau``), summed over the
  batch, between the global embeddings of modality pairs, users against all users and positive
  items against all items.
"""

import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.loss import EmbLoss

from recbole_gtc.config.rules import choice, integer, number
from recbole_gtc.model.abstract_recommender import (MMREC_KEYS, MultiModalRecommender, bpr_loss, lightgcn_mean,
                                                    power_propagate, sparse_from_scipy)
from recbole_gtc.model.layers.bipartite import normalized_bipartite_adjacency


def gumbel_softmax(logits, tau, generator=None):
    """Soft Gumbel-softmax over the last dimension: ``softmax((logits + g) / tau)``, ``g ~ Gumbel(0, 1)``.

    Args:
        logits (Tensor): ``(n, H)``.
        tau (float): temperature.
        generator (torch.Generator, optional): fixed noise (evaluation); ``None`` uses the global RNG.
    """
    if generator is None:
        noise = torch.empty_like(logits).exponential_()
    else:  # a CPU generator: the same noise on every device
        noise = torch.empty(logits.shape, dtype=logits.dtype).exponential_(generator=generator).to(logits.device)
    gumbels = -noise.log()
    return torch.softmax((logits + gumbels) / tau, dim=-1)


def hypergraph_propagate(item_hyper, user_hyper, item_emb, n_layers):
    """Hypergraph message passing (LGMRec Eq. 6-7).

    Args:
        item_hyper (Tensor): ``(I, H)`` item-hyperedge dependencies.
        user_hyper (Tensor): ``(U, H)`` user-hyperedge dependencies.
        item_emb (Tensor): ``(I, d)`` input item embeddings.
        n_layers (int): >= 1.

    Returns:
        (Tensor, Tensor): users ``(U, d)`` and items ``(I, d)``:
        ``E_i = (H_i H_i^T)^L E``, ``E_u = H_u H_i^T (H_i H_i^T)^{L-1} E``.
    """
    items, users = item_emb, None
    for _ in range(n_layers):
        hyperedges = item_hyper.T @ items  # (H, d)
        items = item_hyper @ hyperedges
        users = user_hyper @ hyperedges
    return users, items


def info_nce_sum(anchor, positive, candidates, tau):
    """``-sum_b log( exp(<a_b, p_b>/tau) / sum_c exp(<a_b, c>/tau) )`` on L2-normalised rows.

    Args:
        anchor, positive (Tensor): ``(B, d)``; candidates (Tensor): ``(N, d)``.
    """
    a, p, c = F.normalize(anchor, dim=1), F.normalize(positive, dim=1), F.normalize(candidates, dim=1)
    pos = (a * p).sum(-1) / tau
    return (torch.logsumexp(a @ c.T / tau, dim=1) - pos).sum()


class LGMRec(MultiModalRecommender):
    r"""LGMRec as a RecBole general recommender.

    Attributes (after ``__init__``):
        norm_adj (sparse Tensor): ``(U + I, U + I)`` normalised training graph.
        inter (sparse Tensor): ``(U, I)`` binary training matrix R.
        user_inv_degree (Tensor): ``(U, 1)`` 1 / (number of training items) (0 for users with none).
    """

    required_keys = ("embedding_size", "feat_embed_dim", "cf_model", "n_ui_layers", "n_mm_layers", "n_hyper_layer",
                     "hyper_num", "keep_rate", "alpha", "cl_weight", "reg_weight", "tau", "eval_noise",
                     "eval_noise_seed")
    config_rules = dict(MMREC_KEYS, cf_model=choice("lightgcn", "mf"), tau=number(0, low_open=True),
                        eval_noise=choice("fixed", "fresh"), eval_noise_seed=integer(0))

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.require_one_width("adds modality and ID embeddings")
        feats = dataset.modality_feats
        d = self.embedding_size
        for name, feat in feats.items():
            self.register_buffer(f"feat_{name}", feat.float(), persistent=False)
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_id_embedding = nn.Embedding(self.n_items, d)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        # W_m (D_m, d) and V_m (D_m, H): bias-free maps of the raw features.
        self.item_trs = nn.ParameterDict(
            {m: nn.Parameter(nn.init.xavier_uniform_(torch.empty(feats[m].shape[1], d))) for m in self.modalities}
        )
        self.hyper = nn.ParameterDict(
            {m: nn.Parameter(nn.init.xavier_uniform_(torch.empty(feats[m].shape[1], self.hyper_num)))
             for m in self.modalities}
        )
        self.drop = nn.Dropout(p=1.0 - float(self.keep_rate))

        users, items = self.training_pairs(dataset)
        self.register_buffer(
            "norm_adj", normalized_bipartite_adjacency(users, items, self.n_users, self.n_items), persistent=False
        )
        r = self.interaction_matrix(dataset)
        self.register_buffer("inter", sparse_from_scipy(r), persistent=False)
        degree = torch.from_numpy(r.getnnz(axis=1)).float().unsqueeze(1)
        self.register_buffer("user_inv_degree", torch.where(degree > 0, 1.0 / degree.clamp(min=1), 0.0),
                             persistent=False)
        # Padding user 0 and padding item 0 join no hyperedge and are no contrastive candidates.
        real_users = torch.ones(self.n_users, 1)
        real_users[0] = 0
        real_items = torch.ones(self.n_items, 1)
        real_items[0] = 0
        self.register_buffer("real_users", real_users, persistent=False)
        self.register_buffer("real_items", real_items, persistent=False)
        self.reg_loss = EmbLoss()  # (||e_u|| + ||e_p|| + ||e_n||) / B, Eq. 11's regulariser

    # ------------------------------------------------------------------ parts
    def collaborative(self):
        """CGE: ``(U + I, d)``."""
        ego = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight])
        return ego if self.cf_model == "mf" else lightgcn_mean(self.norm_adj, ego, self.n_ui_layers)

    def modality_graph(self, m):
        """MGE of modality m: ``(U + I, d)``."""
        item_feats = getattr(self, f"feat_{m}") @ self.item_trs[m]
        user_feats = torch.sparse.mm(self.inter, item_feats) * self.user_inv_degree
        return power_propagate(self.norm_adj, torch.cat([user_feats, item_feats]), self.n_mm_layers)

    def hyper_dependencies(self, m, generator=None):
        """``(H_i (I, H), H_u (U, H))`` of modality m before dropout; padding rows are zero."""
        logits = getattr(self, f"feat_{m}") @ self.hyper[m]
        item_hyper = gumbel_softmax(logits, self.tau, generator) * self.real_items
        user_hyper = gumbel_softmax(torch.sparse.mm(self.inter, logits), self.tau, generator) * self.real_users
        return item_hyper, user_hyper

    def forward(self):
        """Full-graph forward pass.

        Training draws fresh Gumbel noise and hyperedge dropout. Evaluation has no dropout and,
        with ``eval_noise: fixed``, Gumbel noise from ``eval_noise_seed``, so the scores of given
        weights never change; ``eval_noise: fresh`` draws new noise from the global RNG at every
        evaluation, as the released code does (its scores change from call to call).

        Returns:
            dict: ``user`` ``(U, d)``, ``item`` ``(I, d)`` final embeddings and ``hyper``, per
            modality ``(users (U, d), items (I, d))`` global embeddings.
        """
        fixed = not self.training and self.eval_noise == "fixed"
        generator = torch.Generator().manual_seed(int(self.eval_noise_seed)) if fixed else None
        cge = self.collaborative()
        local = cge
        for m in self.modalities:
            local = local + F.normalize(self.modality_graph(m), dim=1)
        cge_items = cge[self.n_users:]
        hyper, global_emb = {}, 0.0
        for m in self.modalities:
            item_hyper, user_hyper = self.hyper_dependencies(m, generator)
            hyper[m] = hypergraph_propagate(self.drop(item_hyper), self.drop(user_hyper), cge_items,
                                            self.n_hyper_layer)
            global_emb = global_emb + torch.cat(hyper[m])
        out = local + self.alpha * F.normalize(global_emb, dim=1)
        users, items = torch.split(out, [self.n_users, self.n_items])
        return {"user": users, "item": items, "hyper": hyper}

    def contrastive(self, hyper, user, pos):
        """L_HCL summed over modality pairs (a, b), a before b in the dataset's order (M = 2: the
        released image -> text term); candidates are all real users / items of modality b."""
        loss = 0.0
        for a, b in itertools.combinations(self.modalities, 2):
            (ua, ia), (ub, ib) = hyper[a], hyper[b]
            loss = loss + info_nce_sum(ua[user], ub[user], ub[1:], self.tau)
            loss = loss + info_nce_sum(ia[pos], ib[pos], ib[1:], self.tau)
        return loss

    def calculate_loss(self, interaction):
        user = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        out = self.forward()
        u, p, n = out["user"][user], out["item"][pos], out["item"][neg]
        loss = bpr_loss(u, p, n) + self.reg_weight * self.reg_loss(u, p, n)
        if len(self.modalities) > 1:
            loss = loss + self.cl_weight * self.contrastive(out["hyper"], user, pos)
        return loss

    def compute_embeddings(self):
        out = self.forward()
        return out["user"], out["item"]
