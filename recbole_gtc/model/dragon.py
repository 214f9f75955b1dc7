"""DRAGON: Enhancing Dyadic Relations with Homogeneous Graphs for Multimodal Recommendation
(Zhou, Zhou, Zhang, Liu, Miao; ECAI 2023), as computed by MMRec's released ``dragon.py``,
for any number M of modalities. DRAGON is GTC's backbone and shares GTC's modules:
the user-item graph and its propagation (``bipartite.py``), the item kNN graph and the
user co-interaction graph with its per-epoch padding (``graphs.py``).

One forward pass (paper Sec. 3):

1. project each modality's frozen features:   F_m = W2 leaky_relu(W1 X_m + b1) + b2   (I, d)
2. heterogeneous graph (Sec. 3.1, Eq. 1-2): x_m = normalize([P_m ; F_m]) row-wise, then
   R_m = x_m + A x_m + ... + A^L x_m over the symmetric-normalised training graph A (L = n_layers)
3. dyadic fusion (Sec. 3.3): items concatenate the views, users weight view m by a
   learned per-user weight w_um:   h_i = [R_1,i ; ... ; R_M,i],   h_u = [w_u1 R_1,u ; ... ; w_uM R_M,u]
4. homogeneous graphs (Sec. 3.2): h_i += S^{n_mm_layers} h_i over the item kNN graph S;
   h_u += sum_n softmax(counts)_un h_n over the user's top-k co-interaction neighbours
5. score y_ui = <h_u, h_i>; loss = -mean log2 sigmoid(y_ui - y_uj)
   + reg_weight (sum_m mean(P_m[u]^2) + mean(w^2))  (Sec. 3.4)
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_gtc.model.bipartite import normalized_bipartite_adjacency, propagate
from recbole_gtc.model.graphs import epoch_generator, user_user_graph
from recbole_gtc.model.mm_base import MultiModalRecommender, power_propagate
from recbole_gtc.model.sparse import NeighbourProduct, to_csr

_LN2 = math.log(2.0)


class DRAGON(MultiModalRecommender):
    r"""DRAGON as a RecBole general recommender.

    Attributes (after ``__init__``):
        norm_adj (sparse CSR Tensor): ``(U + I, U + I)`` normalised training user-item graph (symmetric).
        item_graph (sparse Tensor): ``(I, I)`` item kNN graph of the raw features.
        user_graph (UserGraph): top-``user_graph_k`` co-interaction neighbours of each user.
        user_nb_index, user_nb_weight (Tensor): ``(U, k)`` this epoch's padded neighbour table.
    """

    required_keys = ("embedding_size", "reg_weight", "n_layers", "n_mm_layers", "knn_k", "mm_image_weight",
                     "user_graph_k", "knn_chunk_size")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        feats = dataset.modality_feats
        d = self.embedding_size
        self.graph_cache_dir = config["graph_cache_dir"]
        for name, feat in feats.items():
            self.register_buffer(f"feat_{name}", feat.float(), persistent=False)
        # Two-layer MLP per modality, hidden 4d (the released GCN module's MLP / MLP_1).
        self.projections = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(feats[m].shape[1], 4 * d), nn.LeakyReLU(), nn.Linear(4 * d, d))
            for m in self.modalities
        })
        # P_m: one learned user-preference matrix per modality, (U, d).
        self.user_preference = nn.ParameterDict(
            {m: nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, d))) for m in self.modalities}
        )
        # w: per-user view weights (U, M), softmaxed once at init and then trained freely (as released).
        self.user_view_weight = nn.Parameter(
            torch.softmax(nn.init.xavier_normal_(torch.empty(self.n_users, len(self.modalities))), dim=1)
        )
        self._build_graphs(dataset, feats)

    def _build_graphs(self, dataset, feats):
        """User-item, item-item and user-user graphs from the TRAINING split and the raw features."""
        users, items = self.training_pairs(dataset)
        # CSR, symmetric: it is its own transpose in the backward (recbole_gtc/model/sparse.py).
        self.register_buffer(
            "norm_adj", to_csr(normalized_bipartite_adjacency(users, items, self.n_users, self.n_items)),
            persistent=False,
        )
        self.register_buffer(
            "item_graph",
            self.item_knn_graph(feats, self.knn_k, self.modality_weights(self.mm_image_weight),
                                chunk_size=self.knn_chunk_size, cache_dir=self.graph_cache_dir),
            persistent=False,
        )
        self.user_graph = user_user_graph(users, items, self.n_users, self.n_items, k=self.user_graph_k,
                                          cache_dir=self.graph_cache_dir)
        self.user_graph_product = NeighbourProduct()
        # Persistent: scores depend on the padding draw, so the best checkpoint keeps its epoch's draw.
        self.register_buffer("user_nb_index", torch.zeros(self.n_users, self.user_graph_k, dtype=torch.long))
        self.register_buffer("user_nb_weight", torch.zeros(self.n_users, self.user_graph_k))
        self.on_epoch_start(0)

    def on_epoch_start(self, epoch_idx):
        """Re-draw the padding of users with fewer than k neighbours (once per epoch, as released;
        the same draws as GTC's for the same seed and epoch)."""
        generator = epoch_generator(self.seed, epoch_idx)
        index, weight = self.user_graph.sample(generator=generator)
        self.user_nb_index = index.to(self.user_nb_index.device)
        self.user_nb_weight = weight.to(self.user_nb_weight.device)

    def content_views(self):
        """Projected content ``F_m`` of every item, each ``(n_items, d)``."""
        return {m: self.projections[m](getattr(self, f"feat_{m}")) for m in self.modalities}

    def forward(self):
        """Full-graph forward pass.

        Returns:
            (Tensor, Tensor): users ``(n_users, M*d)`` and items ``(n_items, M*d)``.
        """
        content = self.content_views()
        x = torch.cat(
            [F.normalize(torch.cat([self.user_preference[m], content[m]]), dim=1) for m in self.modalities], dim=1
        )
        r = propagate(self.norm_adj, x, n_layers=self.n_layers, adj_t=self.norm_adj)
        r_users, h_items = torch.split(r, [self.n_users, self.n_items])
        h_users = r_users * self.user_view_weight.repeat_interleave(self.embedding_size, dim=1)
        h_items = h_items + power_propagate(self.item_graph, h_items, self.n_mm_layers)
        h_users = h_users + self.user_graph_product(h_users, self.user_nb_index, self.user_nb_weight)
        return h_users, h_items

    def calculate_loss(self, interaction):
        user = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        h_users, h_items = self.forward()
        u = h_users[user]
        diff = (u * h_items[pos]).sum(-1) - (u * h_items[neg]).sum(-1)
        bpr = -F.logsigmoid(diff).mean() / _LN2  # -mean(log2 sigmoid(.)), computed stably
        reg = sum((self.user_preference[m][user] ** 2).mean() for m in self.modalities)
        reg = reg + (self.user_view_weight ** 2).mean()
        return bpr + self.reg_weight * reg

    def compute_embeddings(self):
        return self.forward()
