"""Paths, errors and model/trainer lookup shared by the runner and the library."""

import importlib
import os

from recbole.utils import get_model as recbole_get_model
from recbole.utils import get_trainer as recbole_get_trainer

from recbole_gtc.errors import RecboleGTCError  # noqa: F401  (re-exported: the package's error root)

#: The repository root: the folder that holds ``recbole_gtc/``, ``properties/`` and ``dataset/``.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROPERTIES_DIR = os.path.join(REPO_ROOT, "properties")
DEFAULT_DATA_PATH = os.path.join(REPO_ROOT, "dataset")

#: Models this package implements: name -> module under recbole_gtc.model.
_PLUGIN_MODELS = {
    "GTC": "recbole_gtc.model.gtc",
    "DRAGON": "recbole_gtc.model.dragon",
    "FREEDOM": "recbole_gtc.model.freedom",
    "LGMRec": "recbole_gtc.model.lgmrec",
    "VBPR": "recbole_gtc.model.vbpr",
}

#: MMRec datasets users bring themselves (their files cannot be bundled).
MMREC_DATASETS = ("baby", "sports", "clothing", "elec")


def get_model(name):
    """Model class for ``name``: a recbole-gtc model, else a RecBole built-in."""
    if name in _PLUGIN_MODELS:
        return getattr(importlib.import_module(_PLUGIN_MODELS[name]), name)
    try:
        return recbole_get_model(name)
    except (ValueError, ImportError):  # RecBole's last search place needs lightgbm/xgboost
        known = ", ".join(sorted(_PLUGIN_MODELS))
        raise RecboleGTCError(
            f"unknown model '{name}': use {known} or a RecBole general recommender (BPR, LightGCN, NGCF, SGL, ...)"
        ) from None


def get_trainer(model_type, model_name):
    """RecBole's trainer for the model, except general recommenders get :class:`MMTrainer`
    (RecBole's Trainer plus a per-epoch hook); other model types keep RecBole's choice."""
    from recbole.utils import ModelType

    if model_type == ModelType.GENERAL:
        if model_name in _PLUGIN_MODELS or recbole_get_trainer(model_type, model_name).__name__ == "Trainer":
            from recbole_gtc.trainer import MMTrainer

            return MMTrainer
    return recbole_get_trainer(model_type, model_name)
