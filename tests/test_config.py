"""The configuration cascade: package < model YAML < dataset YAML < config files < command line (RecBole's order)."""

import shutil

import numpy as np
import pytest
from toydata import random_splits, write_dataset

import recbole_gtc.config.configurator as config_module
from recbole_gtc.config.configurator import MMConfig
from recbole_gtc.utils.errors import RecboleGTCError
from recbole_gtc.utils.utils import PROPERTIES_DIR


@pytest.fixture
def layered(tmp_path, monkeypatch):
    """A dataset YAML and a model YAML that each set some keys; a package overall.yaml under our control."""
    props = tmp_path / "props"
    shutil.copytree(PROPERTIES_DIR, props)
    (props / "model").mkdir(exist_ok=True)
    (props / "model" / "BPR.yaml").write_text("learning_rate: 0.02\nstopping_step: 7\n")
    monkeypatch.setattr(config_module, "PROPERTIES_DIR", str(props))
    extra = "learning_rate: 0.01\nstopping_step: 5\neval_step: 3\ntrain_batch_size: 77\n"
    write_dataset(tmp_path, "mm", random_splits(5, 10), {"image": np.ones((10, 2), np.float32)}, 10, extra=extra)
    user = tmp_path / "user.yaml"
    user.write_text("stopping_step: 9\neval_step: 4\n")
    return tmp_path, user


def _config(root, files=None, cmd=()):
    return MMConfig("BPR", "mm", config_file_list=files, config_dict={"data_path": str(root)}, cmd_args=list(cmd))


def test_each_layer_overrides_the_one_below(layered):
    root, user = layered
    c = _config(root)
    assert c["train_batch_size"] == 77  # dataset YAML over package default
    assert c["learning_rate"] == 0.01  # dataset YAML over model YAML, as in RecBole
    assert c["stopping_step"] == 5
    assert c["eval_step"] == 3
    c = _config(root, [str(user)])
    assert (c["stopping_step"], c["eval_step"]) == (9, 4)  # config files over dataset YAML
    c = _config(root, [str(user)], ["--eval_step=6", "--learning_rate=0.5"])
    assert (c["stopping_step"], c["eval_step"], c["learning_rate"]) == (9, 6, 0.5)  # command line wins


def test_package_defaults_are_the_published_protocol(tmp_path):
    write_dataset(tmp_path, "mm", random_splits(5, 10), {"image": np.ones((10, 2), np.float32)}, 10)
    c = _config(tmp_path)
    assert c["valid_metric"] == "Recall@20"
    assert c["topk"] == [5, 10, 20, 50]
    assert [m.lower() for m in c["metrics"]] == ["recall", "ndcg", "precision", "map"]
    assert c["eval_args"]["mode"] == {"valid": "full", "test": "full"}
    assert c["eval_protocol"] == "mmrec"  # from the dataset YAML
    assert c["modalities"] == {"image": "image_feat.npy"}


def test_bad_overrides_and_files(tmp_path):
    write_dataset(tmp_path, "mm", random_splits(5, 10), {"image": np.ones((10, 2), np.float32)}, 10)
    with pytest.raises(RecboleGTCError, match="--key=value"):
        _config(tmp_path, cmd=["--epochs"])
    with pytest.raises(RecboleGTCError, match="nope.yaml: config file not found"):
        _config(tmp_path, files=[str(tmp_path / "nope.yaml")])
