"""VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback (He & McAuley, AAAI 2016),
as computed by MMRec's released ``vbpr.py`` ("recommended version"), for any number of modalities.

Score (paper Eq. 1 without the bias terms, as released):
``y_ui = <[gamma_u ; theta_u], [gamma_i ; E f_i]>`` with ``gamma_u`` ``(d)``, ``theta_u`` ``(d)``
(one user vector ``(2d)``), ``gamma_i`` ``(d)`` the item ID factor and ``E f_i`` a linear map
(with bias) of the item's concatenated content features ``f_i`` (all modalities, dataset order).
Loss (paper Eq. 4 with MMRec's regulariser): ``-mean log(1e-10 + sigmoid(y_ui - y_uj))
+ reg_weight * (||u_B|| + ||i_B|| + ||j_B||) / B`` (Frobenius norms of the batch's rows).
"""

import torch
import torch.nn as nn
from recbole.model.loss import BPRLoss, EmbLoss

from recbole_gtc.model.abstract_recommender import MMREC_KEYS, MultiModalRecommender


class VBPR(MultiModalRecommender):
    r"""VBPR as a RecBole general recommender.

    Attributes:
        user_factors (Parameter): ``(n_users, 2d)``: ``[gamma_u ; theta_u]``.
        item_factors (Parameter): ``(n_items, d)``: ``gamma_i``.
        content (Linear): ``sum_m D_m -> d`` (E and its bias).
    """

    required_keys = ("embedding_size", "reg_weight")
    #: ``mixed_precision: bf16 | fp16`` is accepted (recbole_gtc.config.validation.check_precision).
    supports_mixed_precision = True
    config_rules = MMREC_KEYS

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        feats = dataset.modality_feats
        d = self.embedding_size
        self.register_buffer("item_content", torch.cat([feats[m].float() for m in self.modalities], dim=1),
                             persistent=False)
        self.user_factors = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, 2 * d)))
        self.item_factors = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.content = nn.Linear(self.item_content.shape[1], d)
        nn.init.xavier_normal_(self.content.weight)
        nn.init.zeros_(self.content.bias)
        # MMRec's BPRLoss and regulariser are RecBole's: -mean log(1e-10 + sigmoid(.)) and the
        # batch rows' norms over B.
        self.bpr_loss = BPRLoss()
        self.reg_loss = EmbLoss()

    def forward(self):
        """``(users (n_users, 2d), items (n_items, 2d))``."""
        return self.user_factors, torch.cat([self.item_factors, self.content(self.item_content)], dim=1)

    def calculate_loss(self, interaction):
        user = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        users, items = self.forward()
        u, p, n = users[user], items[pos], items[neg]
        bpr = self.bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        return bpr + self.reg_weight * self.reg_loss(u, p, n)

    def compute_embeddings(self):
        return self.forward()
