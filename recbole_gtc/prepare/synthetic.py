"""Planted synthetic multi-modal dataset: content matters, and we know how.

Generative process (all draws from one ``numpy.random.default_rng(seed)``, in a
fixed order, so the same parameters give the same bytes):

1. **Item latents.** Every item ``i`` has a *visual* block ``v_i`` (``visual_rank``
   dims), a *textual* block ``t_i`` (``textual_rank`` dims) and *nuisance*
   factors ``n_i`` (``nuisance_rank`` dims), all standard normal, a small
   *ID-only* block ``c_i`` (``id_rank`` dims, scaled by ``sqrt(id_weight)``) that
   no modality sees (collaborative signal that content cannot explain), and a
   long-tailed log-popularity ``-pop_exponent * log(rank_i)`` with ``rank_i`` a
   random permutation of ``1..items`` (Zipf-like).
2. **Features.** Modality ``m`` (image sees the visual block, text the textual
   one) is a fixed random two-layer map of ``[block_m, nuisance_scale * n_i]``:
   ``tanh(x W1 / sqrt(k) + b1) W2 / sqrt(hidden)``, at the requested width, plus
   Gaussian noise of ``noise`` times the signal's standard deviation. The
   nuisance is as visible in the features as the block, but never affects
   preference: it is what a content filter should learn to ignore.
3. **Users.** Every user ``u`` has preference vectors ``p_u`` (visual) and
   ``q_u`` (textual), standard normal, and a personal visual weight
   ``w_u ~ Beta(weight_concentration, weight_concentration)`` (user-conditional
   relevance of the modalities), plus ``r_u`` for the ID-only block. Affinity
   (:func:`affinity`) is ``w_u <p_u, v_i>/sqrt(visual_rank) + (1 - w_u)
   <q_u, t_i>/sqrt(textual_rank) + <r_u, c_i>/sqrt(id_rank)``: mostly the
   visible blocks (the ID-only term has variance ``id_weight**2``), never the
   nuisance.
4. **Interactions.** User ``u`` draws ``min_inter + Geometric`` (mean extra
   ``mean_extra``) *distinct* items from
   ``softmax(sharpness * affinity + log-popularity)`` by Gumbel-top-k. Every item
   nobody drew is then given to one user drawn from the softmax of
   ``sharpness * affinity`` over users, so each item has at least one interaction
   (an MMRec folder has one feature row per referenced item).
5. **Split.** Per-user random 8:1:1 (:func:`~.mmrec.random_split_labels`),
   written as an MMRec folder and imported with :func:`~.mmrec.import_mmrec`,
   the path users take with real data. Ratings are 1 and timestamps 0.

**The planted truth of a written dataset.** The dataset's YAML records every generator
parameter (its comment lines), and user and item tokens are the generator's row indices, so
:func:`planted_truth` regenerates the latents (item blocks, nuisance, each user's ``w_u``) of a
dataset folder exactly, and checks them against its training file; nothing extra is stored.
"""

import json
import os
import tempfile
from dataclasses import asdict, dataclass, replace

import numpy as np

from recbole_gtc.prepare.mmrec import (BUILD_SEED, DEFAULT_MODALITIES, builder_outputs, import_mmrec,
                                       random_split_labels, write_mmrec_folder)
from recbole_gtc.utils.errors import RecboleGTCError, SynthConfigError

MODALITIES = DEFAULT_MODALITIES  # the MMRec file names
DEFAULT_SEED = BUILD_SEED
_CHUNK_USERS = 1024


@dataclass(frozen=True)
class SynthConfig:
    """Generator parameters; see the module docstring for their meaning."""

    users: int
    items: int
    image_dim: int
    text_dim: int
    min_inter: int = 5
    mean_extra: float = 4.0
    seed: int = DEFAULT_SEED
    visual_rank: int = 8
    textual_rank: int = 8
    nuisance_rank: int = 8
    id_rank: int = 4
    id_weight: float = 0.2
    hidden: int = 64
    nuisance_scale: float = 1.0
    noise: float = 0.3
    sharpness: float = 3.0
    pop_exponent: float = 1.0
    weight_concentration: float = 0.7

    def __post_init__(self):
        if self.min_inter > self.items:
            raise SynthConfigError(f"--min-inter {self.min_inter} exceeds --items {self.items}: "
                                   "users draw distinct items")


PRESETS = {
    "tiny": dict(users=150, items=80, image_dim=32, text_dim=16, mean_extra=3.0),
    "small": dict(users=1500, items=700, image_dim=256, text_dim=96, mean_extra=6.5),
    "baby": dict(users=19445, items=7050, image_dim=4096, text_dim=384, mean_extra=3.27, pop_exponent=0.7),
}


@dataclass(frozen=True)
class Latents:
    """Item and user latents (rows are items / users)."""

    visual: np.ndarray
    textual: np.ndarray
    nuisance: np.ndarray
    id_block: np.ndarray
    log_pop: np.ndarray
    user_visual: np.ndarray
    user_textual: np.ndarray
    user_id_block: np.ndarray
    user_weight: np.ndarray


@dataclass(frozen=True)
class RandomMap:
    """A fixed random two-layer map from latent factors to feature space."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray

    def __call__(self, x):
        hidden = np.tanh(x @ self.w1 / np.sqrt(self.w1.shape[0]) + self.b1)
        return hidden @ self.w2 / np.sqrt(self.w2.shape[0])


@dataclass(frozen=True)
class SynthData:
    """A generated dataset: interactions with split labels, features and latents."""

    users: np.ndarray
    items: np.ndarray
    labels: np.ndarray
    features: dict
    latents: Latents


def make_config(preset="small", **overrides):
    """The preset's :class:`SynthConfig` with non-``None`` overrides applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    params = dict(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
    return SynthConfig(**params)


def sample_latents(cfg, rng):
    """Draw item and user latents (step 1 and 3 of the generative process)."""
    n, m = cfg.items, cfg.users
    visual = rng.standard_normal((n, cfg.visual_rank))
    textual = rng.standard_normal((n, cfg.textual_rank))
    nuisance = rng.standard_normal((n, cfg.nuisance_rank))
    id_block = np.sqrt(cfg.id_weight) * rng.standard_normal((n, cfg.id_rank))
    log_pop = -cfg.pop_exponent * np.log(rng.permutation(n) + 1.0)
    user_visual = rng.standard_normal((m, cfg.visual_rank))
    user_textual = rng.standard_normal((m, cfg.textual_rank))
    user_id_block = np.sqrt(cfg.id_weight) * rng.standard_normal((m, cfg.id_rank))
    user_weight = rng.beta(cfg.weight_concentration, cfg.weight_concentration, size=m)
    return Latents(visual, textual, nuisance, id_block, log_pop,
                   user_visual, user_textual, user_id_block, user_weight)


def affinity(latents, users=slice(None)):
    """User-item affinity, shape (len(users), items); never depends on the nuisance."""
    w = latents.user_weight[users, None]
    vis = latents.user_visual[users] @ latents.visual.T / np.sqrt(latents.visual.shape[1])
    txt = latents.user_textual[users] @ latents.textual.T / np.sqrt(latents.textual.shape[1])
    ids = latents.user_id_block[users] @ latents.id_block.T / np.sqrt(latents.id_block.shape[1])
    return w * vis + (1.0 - w) * txt + ids


def sample_maps(cfg, rng):
    """Draw the fixed random map of each modality."""
    maps = {}
    for mod, rank, dim in (("image", cfg.visual_rank, cfg.image_dim), ("text", cfg.textual_rank, cfg.text_dim)):
        k = rank + cfg.nuisance_rank
        maps[mod] = RandomMap(
            w1=rng.standard_normal((k, cfg.hidden)),
            b1=0.5 * rng.standard_normal(cfg.hidden),
            w2=rng.standard_normal((cfg.hidden, dim)),
        )
    return maps


def render_features(latents, maps, cfg, rng):
    """Features of every modality: random map of (block, nuisance) plus noise (step 2)."""
    blocks = {"image": latents.visual, "text": latents.textual}
    features = {}
    for mod, fmap in maps.items():
        signal = fmap(np.hstack([blocks[mod], cfg.nuisance_scale * latents.nuisance]))
        noise = rng.standard_normal(signal.shape) * (cfg.noise * signal.std())
        features[mod] = (signal + noise).astype(np.float32)
    return features


def draw_counts(cfg, rng):
    """Interactions per user: ``min_inter`` plus a geometric tail, capped at half the items."""
    extra = rng.geometric(1.0 / (1.0 + cfg.mean_extra), size=cfg.users) - 1
    cap = max(cfg.min_inter, cfg.items // 2)
    return np.minimum(cfg.min_inter + extra, cap)


def _gumbel_top_k(scores, counts):
    """Row-wise top-``counts`` column indices of ``scores`` (descending), flattened."""
    k_max = int(counts.max())
    top = np.argpartition(-scores, k_max - 1, axis=1)[:, :k_max]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    return top[np.arange(k_max)[None, :] < counts[:, None]]


def draw_interactions(latents, counts, cfg, rng):
    """Each user's distinct items by Gumbel-top-k over sharpness * affinity + log-popularity."""
    users, items = [], []
    for start in range(0, cfg.users, _CHUNK_USERS):
        chunk = slice(start, min(start + _CHUNK_USERS, cfg.users))
        scores = cfg.sharpness * affinity(latents, chunk) + latents.log_pop
        scores += rng.gumbel(size=scores.shape)
        items.append(_gumbel_top_k(scores, counts[chunk]))
        users.append(np.repeat(np.arange(chunk.start, chunk.stop), counts[chunk]))
    return _cover_all_items(latents, np.concatenate(users), np.concatenate(items), cfg, rng)


def _cover_all_items(latents, users, items, cfg, rng):
    missing = np.flatnonzero(np.bincount(items, minlength=cfg.items) == 0)
    if missing.size == 0:
        return users, items
    scores = cfg.sharpness * affinity(latents)[:, missing] + rng.gumbel(size=(cfg.users, missing.size))
    return np.concatenate([users, scores.argmax(axis=0)]), np.concatenate([items, missing])


def generate(cfg):
    """Run the whole generative process for ``cfg``; returns :class:`SynthData`."""
    rng = np.random.default_rng(cfg.seed)
    latents = sample_latents(cfg, rng)
    features = render_features(latents, sample_maps(cfg, rng), cfg, rng)
    users, items = draw_interactions(latents, draw_counts(cfg, rng), cfg, rng)
    labels = random_split_labels(users, rng)
    return SynthData(users, items, labels, features, latents)


def resample_nuisance(latents, rng):
    """The same latents with fresh nuisance factors (for checking what preference depends on)."""
    return replace(latents, nuisance=rng.standard_normal(latents.nuisance.shape))


def command_line(name, preset, cfg):
    """The CLI command that reproduces ``cfg`` (no output paths, so files stay byte-identical)."""
    return (
        f"python -m recbole_gtc.prepare synthetic --dataset {name} --preset {preset} "
        f"--users {cfg.users} --items {cfg.items} --image-dim {cfg.image_dim} "
        f"--text-dim {cfg.text_dim} --min-inter {cfg.min_inter} --seed {cfg.seed}"
    )


def build_synthetic(name, preset="small", out_dir=None, keep_raw=None, quiet=False, force=False, **overrides):
    """Generate, write an MMRec folder (``keep_raw`` or a temp dir) and import it; returns stats.

    ``out_dir`` (default ``./dataset/<name>``) and ``keep_raw`` must be absent or empty
    folders unless ``force``, which replaces them."""
    cfg = make_config(preset, **overrides)
    out_dir, keep_raw = builder_outputs(name, out_dir, keep_raw, force)
    data = generate(cfg)
    provenance = [
        f"Written by: {command_line(name, preset, cfg)}",
        "Planted synthetic data (recbole_gtc.prepare.synthetic); generator parameters:",
        json.dumps(asdict(cfg), sort_keys=True),
    ]
    features = {MODALITIES[mod]: feat for mod, feat in data.features.items()}
    with tempfile.TemporaryDirectory(prefix="synth-mmrec-") as tmp:
        raw = keep_raw if keep_raw is not None else tmp
        write_mmrec_folder(raw, name, data.users, data.items, data.labels, features)
        stats = import_mmrec(raw, name, out_dir=out_dir, modalities=MODALITIES, known_stats=False,
                             provenance=provenance, quiet=quiet, force=force,
                             source=keep_raw or f"the planted generator (preset {preset})")
    stats["config"] = asdict(cfg)
    return stats


#: The YAML comment line that precedes the generator parameters (:func:`build_synthetic`).
PARAMETERS_MARKER = "# Planted synthetic data (recbole_gtc.prepare.synthetic); generator parameters:"


def planted_config(folder, name=None):
    """The :class:`SynthConfig` recorded in a dataset folder's YAML, or ``None`` for a dataset
    the planted generator did not write.

    Args:
        folder (str): the dataset folder (holding ``<name>.yaml``).
        name (str, optional): the dataset's name (default: the folder's name).
    """
    name = name or os.path.basename(os.path.normpath(folder))
    path = os.path.join(folder, f"{name}.yaml")
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.rstrip("\n") for line in handle]
    except OSError:
        return None
    for line, following in zip(lines, lines[1:]):
        if line.strip() == PARAMETERS_MARKER and following.startswith("#"):
            return SynthConfig(**json.loads(following[1:].strip()))
    return None


def planted_truth(folder, name=None, check=True):
    """The planted latents of a dataset written by :func:`build_synthetic`, regenerated from the
    parameters its YAML records (the same draws, so the same numbers), or ``None`` when the
    folder's YAML records none.

    Rows are the generator's user and item indices, which are the dataset's tokens
    (``str(i)``). With ``check``, the regenerated training interactions must equal the
    folder's ``<name>.train.inter`` (a dataset edited after generation is refused).

    Returns:
        Latents or None.

    Raises:
        RecboleGTCError: the training file differs from the regenerated one.
    """
    name = name or os.path.basename(os.path.normpath(folder))
    cfg = planted_config(folder, name)
    if cfg is None:
        return None
    data = generate(cfg)
    if check:
        path = os.path.join(folder, f"{name}.train.inter")
        found = np.loadtxt(path, dtype=np.int64, skiprows=1, usecols=(0, 1), ndmin=2)
        train = data.labels == 0
        expected = np.unique(np.stack([data.users[train], data.items[train]], axis=1), axis=0)
        if not np.array_equal(np.unique(found, axis=0), expected):
            raise RecboleGTCError(f"{path}: the training interactions differ from those the recorded generator "
                                  "parameters give; the planted latents cannot be recovered")
    return data.latents
