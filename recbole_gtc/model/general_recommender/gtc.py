"""GTC: user-aware conditional generative total-correlation learning (arXiv 2604.03014).

The released implementation, inside RecBole, for any number M of content
modalities (M = 2 reproduces the released model). One training step:

1. project each modality's frozen features to d:        F_m = Linear(X_m)               (I, d)
2. diffuse and denoise each F_m conditioned on c (the item ID embedding E, as released; or,
   with ``diffusion_condition: users``, the mean preference of the item's training users):
   F_m,t = q(F_m, t, eps);  eps_hat = denoiser_m(F_m,t, t, c);  G_m = one-step x0 estimate
3. gate content into the ID view:                      e' = e + sum_k w_k view_k
4. propagate every view over the user-item graph:      R_v = X_v + A X_v + A^2 X_v
5. fuse views: items concatenate, users weight each view by a learned per-user weight
6. propagate over the homogeneous graphs (item kNN graph S, user co-interaction graph)
7. score y_ui = <H_u, H_i>;  loss = BPR + reg + TC (Symile over ID + content views) + diffusion MSE

Steps 4-6, BPR and the regulariser are DRAGON's (:class:`~recbole_gtc.model.general_recommender.dragon.DRAGON`,
which this class extends) over V = M + 1 views, the ID view first; GTC changes the item views
(steps 1-3) and adds the TC and diffusion losses.

"User-aware" in the paper vs the code: the paper describes user-aware filtering;
the released code conditions the denoiser on the item ID embedding only. This class
implements the code's behaviour by default (``diffusion_condition: item``);
``diffusion_condition: users`` is our reading of the paper's user-conditioned filter
(docs/method.md, "The user-conditioned filter").
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_gtc.config.rules import boolean, choice, integer, mapping, number
from recbole_gtc.model.general_recommender.dragon import DRAGON
from recbole_gtc.model.layers.bipartite import binary_matrix
from recbole_gtc.model.layers.denoiser import ConditionalDenoiser
from recbole_gtc.model.layers.diffusion import GaussianDiffusion
from recbole_gtc.model.layers.gate import similarity_gate
from recbole_gtc.model.layers.precision import float32_region
from recbole_gtc.model.layers.sparse import sparse_mm, to_csr, transpose_csr
from recbole_gtc.model.loss import pairwise_infonce_loss, symile_loss
from recbole_gtc.utils.errors import RecboleGTCError


class GTC(DRAGON):
    r"""GTC as a RecBole general recommender.

    Needs a :class:`~recbole_gtc.data.MultiModalDataset` (a dataset whose YAML names
    ``modalities``). All interaction-derived structure (user-item graph, user-user
    graph) comes from the training split the model is built with.
    """

    required_keys = (
        "embedding_size", "reg_weight", "tc_weight", "diff_weight", "noise_steps", "beta_start", "beta_end",
        "eval_noise_seed", "logit_scale_init", "tc_chunk_size", "gate_temperature", "knn_k", "n_mm_layers",
        "user_graph_k", "knn_chunk_size", "use_diffusion", "use_tc", "tc_mode", "tc_scope", "use_gate",
        "train_denoiser", "tc_candidates",
    )
    #: ``diffusion_condition`` is optional so that checkpoints written before it existed load
    #: (None means ``item``, the released behaviour).
    optional_keys = ("eval_timestep", "mm_graph_weights", "graph_cache_dir", "diffusion_condition")
    #: Defaults in properties/model/GTC.yaml. Rules that relate two keys (beta_start < beta_end,
    #: eval_timestep < noise_steps) are validation.check_cross's.
    config_rules = dict(
        DRAGON.config_rules,  # the backbone's keys (embedding_size, reg_weight, knn_k, n_mm_layers, ...)
        tc_weight=number(0),
        diff_weight=number(0),
        noise_steps=integer(2),
        beta_start=number(0, 1, low_open=True, high_open=True),
        beta_end=number(0, 1, low_open=True, high_open=True),
        eval_timestep=integer(1, optional=True),
        eval_noise_seed=integer(0),
        logit_scale_init=number(0, low_open=True),
        tc_chunk_size=integer(1),
        gate_temperature=number(0, low_open=True),
        mm_graph_weights=mapping(number(0), optional=True),
        use_diffusion=boolean(),
        use_tc=boolean(),
        tc_mode=choice("symile", "pairwise"),
        tc_scope=choice("all", "batch", "sampled"),
        tc_candidates=integer(1),
        use_gate=boolean(),
        train_denoiser=boolean(),
        diffusion_condition=choice("item", "users", optional=True),
    )
    #: ``mixed_precision: bf16 | fp16`` is accepted (recbole_gtc.config.validation.check_precision): the
    #: sparse products and the diffusion filter run in float32 inside the autocast region.
    supports_mixed_precision = True
    #: User-item propagation hops (hard-coded 2 in the released code).
    n_layers = 2

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.eval_timestep = self.eval_timestep or self.noise_steps // 2
        self.diffusion_condition = self.diffusion_condition or "item"
        self.logit_scale = nn.Parameter(torch.tensor(math.log(self.logit_scale_init)))
        if self.diffusion_condition == "users":
            self.register_item_user_mean(*self.training_pairs(dataset))

    def register_item_user_mean(self, users, items):
        """``B = D_I^-1 R^T`` ``(I, U)`` in CSR with its transpose, from the TRAINING interactions:
        row i averages the item's training users (duplicates count once); an item without
        training users has an empty row (its condition is 0)."""
        r = binary_matrix(users, items, self.n_users, self.n_items).T.tocoo()  # (I, U)
        degree = np.bincount(r.row, minlength=self.n_items).astype(np.float32)
        values = r.data / degree[r.row]
        index = torch.from_numpy(np.vstack([r.row, r.col]).astype(np.int64))
        mean = torch.sparse_coo_tensor(index, torch.from_numpy(values.astype(np.float32)),
                                       (self.n_items, self.n_users)).coalesce()
        self.register_buffer("item_user_mean", to_csr(mean), persistent=False)
        self.register_buffer("item_user_mean_t", transpose_csr(mean), persistent=False)

    @property
    def views(self):
        """The ID view, then one view per modality."""
        return ["id"] + self.modalities

    def build_item_encoders(self, feats):
        """A linear projection per modality, the item ID embedding and the diffusion filter."""
        d = self.embedding_size
        self.projections = nn.ModuleDict({m: nn.Linear(feats[m].shape[1], d) for m in self.modalities})
        self.item_id_embedding = nn.Embedding(self.n_items, d)  # N(0, 1) init, as released

        self.diffusion = GaussianDiffusion(self.noise_steps, self.beta_start, self.beta_end)
        self.denoisers = nn.ModuleDict({m: ConditionalDenoiser(d) for m in self.modalities})
        if not self.train_denoiser:
            # The released code keeps its denoisers outside the torch module tree, so the
            # optimizer never sees them: they stay at their random init while gradients
            # still flow *through* them to the projections and the ID embedding.
            self.denoisers.requires_grad_(False)

    # ------------------------------------------------------------------ graphs
    def item_graph_weights(self):
        """Item-graph weight per modality: configured ones, 1/M for unlisted ones, normalised to sum 1."""
        configured = self.mm_graph_weights or {}
        # The defaults weight the paper's two modalities, absent from some datasets (ml-100k-mm has
        # text and meta): those are ignored. Any other name missing from the dataset is a typo that
        # would otherwise fall back to 1/M without a word.
        unknown = sorted(set(configured) - set(self.modalities) - {"image", "text"})
        if unknown:
            raise RecboleGTCError(f"mm_graph_weights: no modality {', '.join(map(repr, unknown))} in this dataset "
                                  f"(its modalities: {', '.join(self.modalities)})")
        raw = {m: float(configured.get(m, 1.0 / len(self.modalities))) for m in self.modalities}
        total = sum(raw.values())
        if total <= 0:  # each weight is >= 0 (validated); all zero depends on the dataset's modalities
            raise RecboleGTCError(f"mm_graph_weights must be positive, got {raw}")
        return {m: w / total for m, w in raw.items()}

    def register_item_graph(self, graph):
        """The item kNN graph in CSR with its transpose (kNN is not symmetric), for :func:`sparse_mm`."""
        self.register_buffer("item_graph", to_csr(graph), persistent=False)
        self.register_buffer("item_graph_t", transpose_csr(graph), persistent=False)

    def propagate_items(self, h_items):
        """``h + S h + ... + S^L h`` (L = ``n_mm_layers``), ``(I, D)`` -> ``(I, D)``."""
        h = h_items
        for _ in range(self.n_mm_layers):
            h = sparse_mm(self.item_graph, h, self.item_graph_t)
            h_items = h_items + h
        return h_items

    # ------------------------------------------------------------------ forward
    def content_views(self):
        """Projected content ``F_m`` of every item, each ``(n_items, d)``, in float32 even under
        mixed precision: the diffusion filter amplifies their rounding (see :meth:`denoise`), and
        bf16 projections put a step's gradients measurably further from float32's at almost no
        saving (docs/performance.md, "bf16 accuracy")."""
        with float32_region(self.item_id_embedding.weight.device.type):
            return super().content_views()

    def denoiser_condition(self, e):
        """The denoisers' condition, modality -> ``(n_items, d)``, not detached.

        * ``item`` (the released code): the item ID embedding ``e`` for every modality.
        * ``users`` (our reading of the paper): for modality m, ``sqrt(d) * B normalize(P_m)``,
          the mean over the item's TRAINING users of their unit-length preference rows for
          that modality's view (``B``: :meth:`register_item_user_mean`), scaled by ``sqrt(d)``
          to the norm of the ``N(0, 1)`` ID embedding the denoiser was designed for. One sparse
          product per step for all modalities together.
        """
        if self.diffusion_condition != "users":
            return {m: e for m in self.modalities}
        d = self.embedding_size
        with torch.autocast(e.device.type, enabled=False):
            prefs = torch.cat([F.normalize(self.user_preference[m].float(), dim=1) for m in self.modalities], dim=1)
            mean = sparse_mm(self.item_user_mean, prefs, self.item_user_mean_t) * math.sqrt(d)
        return dict(zip(self.modalities, mean.to(e.dtype).split(d, dim=1)))

    def denoise(self, content, cond):
        """Diffuse then denoise each modality conditioned on ``cond``: one ``(n_items, d)`` tensor
        for every modality (the item ID embedding, not detached) or a dict modality -> tensor
        (:meth:`denoiser_condition`).

        Training: a random timestep per item shared across modalities, fresh noise.
        Evaluation: ``t = eval_timestep`` for all items, noise from a fixed seed.

        Returns:
            (dict of Tensor, Tensor): denoised ``G_m`` ``(n_items, d)`` per modality and the
            summed diffusion MSE over real items (0 when ``use_diffusion`` is off).
        """
        denoised, mse = self.denoise_parts(content, cond)
        first = next(iter(content.values()))
        return denoised, sum(mse.values()) if mse else first.new_zeros(())

    def denoise_parts(self, content, cond):
        """:meth:`denoise` with the diffusion MSE of each modality, modality -> scalar (``{}`` when
        ``use_diffusion`` is off)."""
        conds = cond if isinstance(cond, dict) else {m: cond for m in self.modalities}
        cond = conds[self.modalities[0]]
        if not self.use_diffusion:
            return content, {}
        # In the model's own dtype (float32) even under mixed precision: the one-step x0 estimate
        # is x_t / sqrt(abar_t) - sqrt(1/abar_t - 1) eps_hat, two terms larger than the content
        # that cancel, so a bf16 rounding of eps_hat (2^-9 relative) reaches G_m amplified
        # (measured in docs/performance.md, "bf16 accuracy").
        with float32_region(cond.device.type):
            # cond, the ID embedding, is a parameter: autocast leaves it in the model's dtype.
            content = {m: c.to(cond.dtype) for m, c in content.items()}
            n, d = cond.shape
            if self.training:
                t = self.diffusion.sample_timesteps(n)
                noises = {m: torch.randn_like(content[m]) for m in self.modalities}
            else:
                t = torch.full((n,), self.eval_timestep, dtype=torch.long, device=cond.device)
                generator = torch.Generator().manual_seed(int(self.eval_noise_seed))
                noises = {m: torch.randn(n, d, generator=generator).to(cond.device) for m in self.modalities}
            denoised, mse = {}, {}
            for m in self.modalities:
                x_t = self.diffusion.q_sample(content[m], t, noises[m])
                eps_hat = self.denoisers[m](x_t, t, conds[m])
                denoised[m] = self.diffusion.predict_x0(x_t, t, eps_hat)
                mse[m] = F.mse_loss(eps_hat[1:], noises[m][1:])
        return denoised, mse

    def forward(self):
        """Full-graph forward pass.

        Returns:
            dict: ``user`` (n_users, V*d) and ``item`` (n_items, V*d) final representations
            (V = M + 1 views), ``id`` (n_items, d) raw ID embedding, ``denoised`` per-modality
            ``G_m`` (n_items, d), ``projected`` per-modality ``F_m`` before the filter,
            ``diff_loss`` (scalar) and ``diff_mse`` (its terms, modality -> scalar).
        """
        e = self.item_id_embedding.weight
        projected = self.content_views()
        denoised, mse = self.denoise_parts(projected, self.denoiser_condition(e) if self.use_diffusion else e)
        diff_loss = sum(mse.values()) if mse else e.new_zeros(())
        content = [denoised[m] for m in self.modalities]
        e_gated = similarity_gate([e] + content, self.gate_temperature) if self.use_gate else e

        # Steps 4-6 (DRAGON's), in float32 even under mixed precision: sparse products are
        # memory-bound (nothing to gain) and their backward refuses mixed dtypes.
        with float32_region(e.device.type):
            h_users, h_items = self.propagate_views([e_gated.float()] + [c.float() for c in content])
        return {"user": h_users, "item": h_items, "id": e, "projected": projected, "denoised": denoised,
                "diff_loss": diff_loss, "diff_mse": mse}

    # ------------------------------------------------------------------ losses
    def calculate_loss(self, interaction):
        out = self.forward()
        loss = self.backbone_loss(out["user"], out["item"], interaction)
        if self.use_tc:
            loss = loss + self.tc_weight * self.tc_loss(out, torch.cat([interaction[self.ITEM_ID],
                                                                        interaction[self.NEG_ITEM_ID]]))
        if self.use_diffusion:
            loss = loss + self.diff_weight * out["diff_loss"]
        return loss

    def tc_items(self, batch_items):
        """Which items the TC loss sees this step.

        Args:
            batch_items (LongTensor): item ids of the batch (positives and negatives).

        Returns:
            (LongTensor or slice, LongTensor or None): ``cols``, the items whose views form
            the loss's candidate set (``n`` of them), and ``rows``, the ``(r,)`` positions
            within ``cols`` of the rows the loss averages over (``None``: all ``n``).

            * ``all``: every real item (row 0 is padding), rows = columns, ``O(I^2)``.
            * ``batch``: the batch's unique items, rows = columns, ``O(B^2)``.
            * ``sampled``: rows are the batch's unique items; columns are those plus a fresh
              uniform sample (without replacement, torch's global generator, so seeded runs
              repeat) of ``tc_candidates`` real items, ``O(B (B + N))``. Each row keeps its own
              positive; every other column is a negative, as in ``all``.
        """
        if self.tc_scope == "all":
            return slice(1, None), None
        batch = torch.unique(batch_items)
        if self.tc_scope == "batch":
            return batch, None
        n_real = self.n_items - 1
        if self.tc_candidates >= n_real:
            sample = torch.arange(1, self.n_items, device=batch.device)
        else:
            sample = torch.randperm(n_real, device=batch.device)[: self.tc_candidates] + 1
        cols = torch.unique(torch.cat([batch, sample]))  # sorted, so rows are found by binary search
        return cols, torch.searchsorted(cols, batch)

    def tc_loss(self, out, batch_items):
        """Total correlation over the ID view (before the gate) and every denoised content view.

        Args:
            out (dict): :meth:`forward`'s output.
            batch_items (LongTensor): item ids of the batch (used unless ``tc_scope`` is ``all``).
        """
        cols, rows = self.tc_items(batch_items)
        views = [F.normalize(out["id"][cols], dim=1)]
        views += [F.normalize(out["denoised"][m][cols], dim=1) for m in self.modalities]
        scale = self.logit_scale.exp()
        if self.tc_mode == "pairwise":
            return pairwise_infonce_loss(views, scale, chunk_size=self.tc_chunk_size, rows=rows)
        return symile_loss(views, scale, chunk_size=self.tc_chunk_size, rows=rows)

    # ------------------------------------------------------------------ evaluation
    def compute_embeddings(self):
        """Final ``(user, item)`` representations for scoring (see :class:`CachedEvalScores`);
        the whole forward output is kept beside them for :meth:`diagnostics`."""
        out = self.forward()
        self._eval_forward = out
        return out["user"], out["item"]

    _eval_forward = None

    def train(self, mode=True):
        self._eval_forward = None  # dropped with the evaluation representations it goes with
        return super().train(mode)

    def eval_forward(self):
        """The eval-mode :meth:`forward` output of the current evaluation representations
        (computed once per evaluation, with them)."""
        users, _ = self._eval_embeddings()
        out = self._eval_forward
        if out is None or out["user"] is not users:  # the cache was filled elsewhere (e.g. loaded)
            out = self._eval_forward = self.forward()
        return out

    # ------------------------------------------------------------------ diagnostics
    #: Seed of the permutations of the per-epoch TC bound (its own generator: no random stream moves).
    DIAGNOSTICS_SEED = 0

    @torch.no_grad()
    def diagnostics(self):
        """Per-epoch diagnostics (``diagnostics: True``, docs/diagnostics.md), in eval mode (the
        evaluation's timestep and fixed noise) without touching any random stream:

        * ``balance``, ``share/<view>``: :meth:`DRAGON.balance`;
        * ``recon/<m>``: the filter's relative reconstruction error ``|G_m - F_m|^2 / |F_m|^2``
          over real items, and ``eps_mse/<m>`` its noise-prediction error (the diffusion loss's
          term), per modality; absent without the filter;
        * ``tc_bound``: ``log n - L_Symile`` over all n real items with the learned scale, the
          total-correlation lower bound on the views the TC loss sees (nats; at most ``log n``).
        """
        with self.eval_mode():
            out = self.eval_forward()
            result = self.balance(out["user"], out["item"])
            for m, mse in out["diff_mse"].items():
                f, g = out["projected"][m][1:], out["denoised"][m][1:]
                result[f"recon/{m}"] = float(((g - f) ** 2).sum() / (f ** 2).sum().clamp_min(1e-30))
                result[f"eps_mse/{m}"] = float(mse)
            views = [F.normalize(out["id"][1:], dim=1)]
            views += [F.normalize(out["denoised"][m][1:].float(), dim=1) for m in self.modalities]
            generator = torch.Generator(device=views[0].device).manual_seed(self.DIAGNOSTICS_SEED)
            loss = symile_loss(views, self.logit_scale.exp(), chunk_size=self.tc_chunk_size, generator=generator)
            result["tc_bound"] = math.log(views[0].shape[0]) - float(loss)
            return result
