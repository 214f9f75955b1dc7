"""A small planted multi-modal dataset for the baselines' learning tests, and a helper to train on it.

Built once per test session (400 users, 200 items, image 64-d, text 32-d, the ``synth-mm``
generator), in two copies: the real one, and one whose feature rows are permuted across
items, so content carries no signal there while the interactions are identical.
"""

import os

import numpy as np

from recbole_gtc.quick_start.quick_start import run_recbole_gtc

NAME = "plant"
BUDGET = {"epochs": 10, "learning_rate": 0.01, "train_batch_size": 512, "stopping_step": 100, "use_gpu": False,
          "state": "WARNING", "graph_cache_dir": None}
_ROOTS = {}


def planted_roots(tmp_path_factory):
    """``{"real": data_path, "permuted": data_path}``, each holding the dataset ``plant``."""
    if not _ROOTS:
        from recbole_gtc.prepare.synthetic import build_synthetic

        base = tmp_path_factory.mktemp("planted")
        real, permuted = base / "real", base / "permuted"
        build_synthetic(NAME, preset="small", users=400, items=200, image_dim=64, text_dim=32,
                        out_dir=str(real / NAME), quiet=True)
        os.makedirs(permuted / NAME)
        rng = np.random.default_rng(0)
        order = None
        for file in os.listdir(real / NAME):
            data = (real / NAME / file).read_bytes()
            if file.endswith(".npy"):
                feat = np.load(real / NAME / file)
                order = rng.permutation(len(feat)) if order is None else order
                np.save(permuted / NAME / file, feat[order])
            else:
                (permuted / NAME / file).write_bytes(data)
        _ROOTS.update(real=str(real), permuted=str(permuted))
    return dict(_ROOTS)


def train(model, data_path, tmp_path, **overrides):
    """Train ``model`` on ``plant`` under :data:`BUDGET`; returns run_recbole_gtc's result."""
    config = dict(BUDGET, data_path=data_path, checkpoint_dir=str(tmp_path / "saved"), **overrides)
    return run_recbole_gtc(model, NAME, config_dict=config)


def recall(result):
    return result["test_result"]["recall@20"]
