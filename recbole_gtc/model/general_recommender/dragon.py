"""DRAGON: Enhancing Dyadic Relations with Homogeneous Graphs for Multimodal Recommendation
(Zhou, Zhou, Zhang, Liu, Miao; ECAI 2023), as computed by MMRec's released ``dragon.py``,
for any number M of modalities. DRAGON is GTC's backbone: :class:`~recbole_gtc.model.general_recommender.gtc.GTC`
derives from this class and changes its item views (an ID view, a diffusion filter, a gate)
and the item-graph step, and adds its losses.

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

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_gtc.evaluator.diagnostics import balance_summary, view_score_spread
from recbole_gtc.model.abstract_recommender import MMREC_KEYS, MultiModalRecommender, bpr_loss, power_propagate
from recbole_gtc.model.layers.bipartite import normalized_bipartite_adjacency, propagate
from recbole_gtc.model.layers.graphs import epoch_generator, user_user_graph
from recbole_gtc.model.layers.sparse import NeighbourProduct, to_csr

_LN2 = math.log(2.0)


class DRAGON(MultiModalRecommender):
    r"""DRAGON as a RecBole general recommender.

    A subclass changes the views through :attr:`views`, :meth:`build_item_encoders` and the
    item graph through :meth:`item_graph_weights`, :meth:`register_item_graph` and
    :meth:`propagate_items`; everything else (the user-item graph, the user graph and its
    per-epoch padding, the fusion, BPR and the regulariser) is this class's.

    Attributes (after ``__init__``):
        norm_adj (sparse CSR Tensor): ``(U + I, U + I)`` normalised training user-item graph (symmetric).
        item_graph (sparse Tensor): ``(I, I)`` item kNN graph of the raw features.
        user_graph (UserGraph): top-``user_graph_k`` co-interaction neighbours of each user.
        user_nb_index, user_nb_weight (Tensor): ``(U, k)`` this epoch's padded neighbour table.
        user_preference (ParameterDict): view -> ``P_v`` ``(U, d)``.
        user_view_weight (Parameter): ``(U, V)`` per-user view weights ``w``.
    """

    required_keys = ("embedding_size", "reg_weight", "n_layers", "n_mm_layers", "knn_k", "mm_image_weight",
                     "user_graph_k", "knn_chunk_size")
    optional_keys = ("graph_cache_dir",)
    config_rules = MMREC_KEYS

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        feats = dataset.modality_feats
        d = self.embedding_size
        # Frozen content: buffers, not parameters (the released GTC's trainable copies were dead weight).
        for name, feat in feats.items():
            self.register_buffer(f"feat_{name}", feat.float(), persistent=False)
        self.build_item_encoders(feats)
        # P_v: one learned user-preference matrix per view, (U, d).
        self.user_preference = nn.ParameterDict(
            {v: nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, d))) for v in self.views}
        )
        # w: per-user view weights (U, V), softmaxed once at init and then trained freely (as released).
        self.user_view_weight = nn.Parameter(
            torch.softmax(nn.init.xavier_normal_(torch.empty(self.n_users, len(self.views))), dim=1)
        )
        self._build_graphs(dataset, feats)

    @property
    def views(self):
        """The views' names, in the order of their d-wide blocks in the fused representations."""
        return self.modalities

    def build_item_encoders(self, feats):
        """The modules that make the item views from the frozen features ``feats`` (modality ->
        ``(I, D_m)``): a two-layer MLP per modality, hidden 4d (the released GCN module's MLP / MLP_1)."""
        d = self.embedding_size
        self.projections = nn.ModuleDict({
            m: nn.Sequential(nn.Linear(feats[m].shape[1], 4 * d), nn.LeakyReLU(), nn.Linear(4 * d, d))
            for m in self.modalities
        })

    # ------------------------------------------------------------------ graphs
    def _build_graphs(self, dataset, feats):
        """User-item, item-item and user-user graphs from the TRAINING split and the raw features."""
        users, items = self.training_pairs(dataset)
        # CSR, symmetric: it is its own transpose in the backward (recbole_gtc/model/layers/sparse.py).
        self.register_buffer(
            "norm_adj", to_csr(normalized_bipartite_adjacency(users, items, self.n_users, self.n_items)),
            persistent=False,
        )
        self.register_item_graph(self.item_knn_graph(feats, self.knn_k, self.item_graph_weights(),
                                                     chunk_size=self.knn_chunk_size, cache_dir=self.graph_cache_dir))
        self.user_graph = user_user_graph(users, items, self.n_users, self.n_items, k=self.user_graph_k,
                                          cache_dir=self.graph_cache_dir)
        self.user_graph_product = NeighbourProduct()
        # Persistent: scores depend on the padding draw, so the best checkpoint keeps its epoch's draw.
        self.register_buffer("user_nb_index", torch.zeros(self.n_users, self.user_graph_k, dtype=torch.long))
        self.register_buffer("user_nb_weight", torch.zeros(self.n_users, self.user_graph_k))
        self.on_epoch_start(0)

    def item_graph_weights(self):
        """Item-graph weight per modality: ``mm_image_weight`` for ``image`` (MMRec's rule)."""
        return self.modality_weights(self.mm_image_weight)

    def register_item_graph(self, graph):
        """Keep the item kNN graph ``graph`` (sparse COO ``(I, I)``) as a buffer."""
        self.register_buffer("item_graph", graph, persistent=False)

    def propagate_items(self, h_items):
        """``h + S^L h`` (L = ``n_mm_layers``; the last layer only, as released), ``(I, D)`` -> ``(I, D)``."""
        return h_items + power_propagate(self.item_graph, h_items, self.n_mm_layers)

    def on_epoch_start(self, epoch_idx):
        """Re-draw the padding of users with fewer than k neighbours (once per epoch, as released)."""
        generator = epoch_generator(self.seed, epoch_idx)
        index, weight = self.user_graph.sample(generator=generator)
        self.user_nb_index = index.to(self.user_nb_index.device)
        self.user_nb_weight = weight.to(self.user_nb_weight.device)

    # ------------------------------------------------------------------ forward
    def content_views(self):
        """Projected content ``F_m`` of every item, each ``(n_items, d)``."""
        return {m: self.projections[m](getattr(self, f"feat_{m}")) for m in self.modalities}

    def propagate_views(self, item_views):
        """Steps 2-4 of the module docstring: each view over the user-item graph, the fusion, the
        homogeneous graphs.

        Args:
            item_views (list of Tensor): one ``(n_items, d)`` per view, in :attr:`views` order.

        Returns:
            (Tensor, Tensor): users ``(n_users, V*d)`` and items ``(n_items, V*d)``.
        """
        # All views go through the sparse product together (one (U+I) x V*d matrix).
        x = torch.cat(
            [F.normalize(torch.cat([self.user_preference[v], item_view]), dim=1)
             for v, item_view in zip(self.views, item_views)],
            dim=1,
        )
        r = propagate(self.norm_adj, x, n_layers=self.n_layers, adj_t=self.norm_adj)
        r_users, h_items = torch.split(r, [self.n_users, self.n_items])
        h_users = r_users * self.user_view_weight.repeat_interleave(self.embedding_size, dim=1)  # w_uv on view v
        h_items = self.propagate_items(h_items)
        h_users = h_users + self.user_graph_product(h_users, self.user_nb_index, self.user_nb_weight)
        return h_users, h_items

    def forward(self):
        """Full-graph forward pass.

        Returns:
            (Tensor, Tensor): users ``(n_users, M*d)`` and items ``(n_items, M*d)``.
        """
        content = self.content_views()
        return self.propagate_views([content[m] for m in self.modalities])

    def backbone_loss(self, h_users, h_items, interaction):
        """BPR in base 2 plus the regulariser (Sec. 3.4) of the batch, from the final
        representations ``h_users`` ``(U, V*d)`` and ``h_items`` ``(I, V*d)``; a scalar."""
        user = interaction[self.USER_ID]
        u = h_users[user]
        bpr = bpr_loss(u, h_items[interaction[self.ITEM_ID]], h_items[interaction[self.NEG_ITEM_ID]]) / _LN2
        reg = sum((self.user_preference[v][user] ** 2).mean() for v in self.views)
        reg = reg + (self.user_view_weight ** 2).mean()
        return bpr + self.reg_weight * reg

    def calculate_loss(self, interaction):
        return self.backbone_loss(*self.forward(), interaction)

    def compute_embeddings(self):
        return self.forward()

    # ------------------------------------------------------------------ diagnostics
    @torch.no_grad()
    def diagnostics(self):
        """Per-epoch diagnostics (``diagnostics: True``), computed in eval mode without touching
        any random stream, so a run's numbers are those of a run without them. Called in eval
        mode right after an evaluation, they reuse its representations.

        Returns:
            dict: ``balance`` (the modality balance score) and ``share/<view>`` (each view's
            share of what moves the users' scores), see :func:`balance_summary`.
        """
        with self.eval_mode():
            return self.balance(*self._eval_embeddings())

    @contextlib.contextmanager
    def eval_mode(self):
        """Eval mode for the block; a model already in eval mode is left as it is (switching
        would drop its cached evaluation representations)."""
        was_training = self.training
        if was_training:
            self.eval()
        try:
            yield
        finally:
            if was_training:
                self.train()

    def balance(self, h_users, h_items):
        """:func:`balance_summary` of the final representations ``(U, V*d)`` and ``(I, V*d)``."""
        spread = view_score_spread(h_users, h_items, len(self.views))
        return balance_summary(spread, self.views, self.modalities)
