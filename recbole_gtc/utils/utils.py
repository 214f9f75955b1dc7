"""Paths of the shipped defaults and datasets, and the model lookup (RecBole's ``get_model``
extended with this package's models)."""

import importlib
import os

from recbole.utils import get_model as recbole_get_model

from recbole_gtc.utils.errors import RecboleGTCError

#: The installed ``recbole_gtc/`` folder (this file is ``recbole_gtc/utils/utils.py``).
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The repository root when running from a checkout (or an editable install): the folder
#: that holds ``recbole_gtc/``, ``properties/``, ``dataset/`` and ``setup.cfg``.
REPO_ROOT = os.path.dirname(PACKAGE_DIR)
#: Where a built wheel carries copies of the repository's ``properties/`` and bundled
#: ``dataset/`` folders (``setup.py``'s build step puts them there).
BUNDLED_DIR = os.path.join(PACKAGE_DIR, "_bundled")


def _shipped(name):
    """``<repo>/<name>`` in a checkout, else the wheel's ``recbole_gtc/_bundled/<name>``."""
    in_checkout = os.path.join(REPO_ROOT, name)
    if os.path.isfile(os.path.join(REPO_ROOT, "setup.cfg")) and os.path.isdir(in_checkout):
        return in_checkout
    return os.path.join(BUNDLED_DIR, name)


#: The package's YAML defaults (``overall.yaml``, ``model/<M>.yaml``).
PROPERTIES_DIR = _shipped("properties")
#: The folder holding the bundled datasets (synth-mm, ml-100k-mm).
DEFAULT_DATA_PATH = _shipped("dataset")
BUNDLED_DATASETS = ("synth-mm", "ml-100k-mm")


def default_data_path(dataset):
    """Where a dataset is looked for when ``data_path`` is not given: ``./dataset/`` of the
    working directory (RecBole's default) if it holds ``dataset``, else the bundled datasets."""
    local = os.path.join(os.getcwd(), "dataset")
    if os.path.isdir(os.path.join(local, str(dataset))):
        return local
    return DEFAULT_DATA_PATH

#: Models this package implements: name -> module under recbole_gtc.model.
_PLUGIN_MODELS = {
    "GTC": "recbole_gtc.model.general_recommender.gtc",
    "DRAGON": "recbole_gtc.model.general_recommender.dragon",
    "FREEDOM": "recbole_gtc.model.general_recommender.freedom",
    "LGMRec": "recbole_gtc.model.general_recommender.lgmrec",
    "VBPR": "recbole_gtc.model.general_recommender.vbpr",
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
