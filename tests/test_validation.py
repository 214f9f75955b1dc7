"""Configuration validation (recbole_gtc/config/validation.py): bad values and unknown keys are one line."""

import glob
import os

import pytest
import yaml

from recbole_gtc.config.configurator import MMConfig
from recbole_gtc.config.validation import COMMON_KEYS, SCHEMA, known_keys, rules_for, validate_config
from recbole_gtc.utils.errors import RecboleGTCError
from recbole_gtc.utils.utils import _PLUGIN_MODELS, PROPERTIES_DIR


def _config(model="GTC", *cmd, **config_dict):
    config = MMConfig(model, "synth-mm", config_dict=dict({"use_gpu": False}, **config_dict), cmd_args=list(cmd))
    validate_config(config)
    return config


def _error(model, *cmd, **config_dict):
    with pytest.raises(RecboleGTCError) as info:
        _config(model, *cmd, **config_dict)
    message = str(info.value)
    assert "\n" not in message
    return message


#: (model, --key=value, the exact message). Every one of these used to end in a traceback
#: or to be silently ignored.
CATALOGUE = [
    ("GTC", "--epochs=abc", "epochs='abc': must be an integer >= 1"),
    ("GTC", "--epochs=0", "epochs=0: must be an integer >= 1"),
    ("GTC", "--epochs=2.5", "epochs=2.5: must be an integer >= 1"),
    ("GTC", "--knn_k=0", "knn_k=0: must be an integer >= 1"),
    ("GTC", "--embedding_size=0", "embedding_size=0: must be an integer >= 1"),
    ("BPR", "--embedding_size=-3", "embedding_size=-3: must be an integer >= 1"),
    ("GTC", "--topk=[0]", "topk=[0]: must be an integer >= 1 or a non-empty list of them"),
    ("BPR", "--topk=[]", "topk=[]: must be an integer >= 1 or a non-empty list of them"),
    ("GTC", "--learning_rate=0", "learning_rate=0: must be a number > 0"),
    ("GTC", "--learning_rate=fast", "learning_rate='fast': must be a number > 0"),
    ("GTC", "--train_batch_size=0", "train_batch_size=0: must be an integer >= 1"),
    ("GTC", "--use_tc=maybe", "use_tc='maybe': must be True or False"),
    ("GTC", "--tc_mode=triple", "tc_mode='triple': must be one of symile | pairwise"),
    ("GTC", "--tc_scope=everything", "tc_scope='everything': must be one of all | batch | sampled"),
    ("GTC", "--tc_candidates=0", "tc_candidates=0: must be an integer >= 1"),
    ("GTC", "--eval_timestep=0", "eval_timestep=0: must be an integer >= 1, or None"),
    ("FREEDOM", "--dropout=1.0", "dropout=1.0: must be a number >= 0 and < 1"),
    ("DRAGON", "--mm_image_weight=1.5", "mm_image_weight=1.5: must be a number >= 0 and <= 1"),
    ("LGMRec", "--cf_model=ngcf", "cf_model='ngcf': must be one of lightgcn | mf"),
    ("LGMRec", "--keep_rate=0", "keep_rate=0: must be a number > 0 and <= 1"),
    ("LGMRec", "--n_hyper_layer=0", "n_hyper_layer=0: must be an integer >= 1"),
    ("GTC", "--beta_end=1.5", "beta_end=1.5: must be a number > 0 and < 1"),
    ("GTC", "--beta_start=0.05", "beta_start=0.05: must be smaller than beta_end=0.01"),
    ("GTC", "--eval_timestep=600", "eval_timestep=600: must be < noise_steps=600 (or ~ for noise_steps // 2)"),
    ("GTC", "--mm_graph_weights={'image':-1}", "mm_graph_weights={'image': -1}: entry image=-1 must be a number >= 0"),
    ("GTC", "--eval_protocol=leaky", "eval_protocol='leaky': must be one of mmrec | recbole, or None"),
    ("GTC", "--seed=-1", "seed=-1: must be an integer in [0, 2**32 - 1]"),
    ("LightGCN", "--n_layers=-1", "n_layers=-1: must be an integer >= 0"),
    ("BPR", "--learning_rat=0.1", "unknown key 'learning_rat' (did you mean 'learning_rate'?)"),
    ("GTC", "--knnk=5", "unknown key 'knnk' (did you mean 'knn_k'?)"),
    ("GTC", "--zzzz=1", "unknown key 'zzzz' (not a RecBole, recbole-gtc or dataset key)"),
    ("BPR", "--valid_metric=Recall@30",
     "valid_metric='Recall@30': must be one of the evaluated metrics, metrics x topk (recall@5, recall@10, recall@20, recall@50, "
     "ndcg@5, ndcg@10, ndcg@20, ndcg@50, precision@5, precision@10, precision@20, precision@50, map@5, map@10, "
     "map@20, map@50)"),
    ("BPR", "--metrics=['Recal']", "metrics=['Recal']: 'Recal' is not a RecBole metric (known: auc, "
     "averagepopularity, gauc, giniindex, hit, itemcoverage, logloss, mae, map, mrr, ndcg, precision, recall, "
     "rmse, shannonentropy, tailpercentage)"),
    ("BPR", "--metrics=['AUC']", "metrics=['AUC']: value metrics (AUC, LogLoss, MAE, RMSE) cannot be used with full "
     "ranking (eval_args mode: full); use ranking metrics (Recall, NDCG, ...)"),
    ("BPR", "--eval_args={'mode':'uni0'}", "eval_args={'mode': 'uni0'}: mode must be full, labeled, uniN or popN "
     "(N >= 1), or {valid: ..., test: ...}"),
    ("BPR", "--train_neg_sample_args={'distribution':'zipf'}",
     "train_neg_sample_args={'distribution': 'zipf'}: distribution must be uniform or popularity"),
    ("BPR", "--local_rank=0", "local_rank=0: not a configuration key; multi-process training is set up by the "
     "runner's flags --nproc, --world_size, --ip, --port, --group_offset"),
    ("BPR", "--state=loud", "state='loud': must be one of INFO | DEBUG | WARNING | ERROR | CRITICAL"),
]


@pytest.mark.parametrize("model, arg, message", CATALOGUE, ids=[c[1] for c in CATALOGUE])
def test_bad_value_or_key_is_one_exact_line(model, arg, message):
    assert _error(model, arg) == message


def test_config_dict_and_files_are_checked_like_the_command_line(tmp_path):
    assert _error("GTC", knn_k=0) == "knn_k=0: must be an integer >= 1"
    path = tmp_path / "bad.yaml"
    path.write_text("learning_rat: 0.1\n")
    with pytest.raises(RecboleGTCError, match=r"unknown key 'learning_rat' \(did you mean 'learning_rate'\?\)"):
        validate_config(MMConfig("BPR", "synth-mm", [str(path)], {"use_gpu": False}, cmd_args=[]))


def test_bad_value_in_a_package_yaml_is_caught_too(tmp_path):
    """Values are checked wherever they come from (here a dataset YAML), not only user input."""
    import numpy as np
    from toydata import random_splits, write_dataset

    feats = {"image": np.ones((20, 3), dtype=np.float32)}
    write_dataset(tmp_path, "mm", random_splits(10, 20), feats, 20, extra="knn_k: 0\n")
    with pytest.raises(RecboleGTCError, match=r"^knn_k=0: must be an integer >= 1$"):
        validate_config(MMConfig("GTC", "mm", config_dict={"data_path": str(tmp_path), "use_gpu": False}, cmd_args=[]))


def _registered_models():
    return sorted(_PLUGIN_MODELS) + ["BPR", "LightGCN", "NGCF", "SGL", "ItemKNN", "EASE", "NCL", "SimpleX"]


@pytest.mark.parametrize("model", _registered_models())
def test_every_default_configuration_is_valid(model):
    """No false alarms: each model's own defaults (RecBole's or this package's YAML) pass. A
    registered model that does not import, or a name nobody knows, fails here."""
    _config(model)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(PROPERTIES_DIR, "**", "*.yaml"), recursive=True)))
def test_every_key_this_package_defines_has_a_rule(path):
    with open(path) as f:
        keys = set(yaml.safe_load(f) or {})
    name = os.path.splitext(os.path.basename(path))[0]
    if name == "overall":
        rules = COMMON_KEYS
    else:
        assert name in _PLUGIN_MODELS or name in SCHEMA, f"{name}: a model YAML for a model nobody registered"
        rules = rules_for(name)
    assert not sorted(keys - set(rules)), f"{path}: keys without a rule (the model's config_rules)"


def test_known_keys_cover_recbole_and_the_dataset_yaml():
    config = _config("BPR")
    known = known_keys(config)
    for key in ("learning_rate", "n_layers", "modalities", "eval_protocol", "knn_k", "hyper_num", "USER_ID_FIELD",
                "benchmark_filename", "worker", "clip_grad_norm", "keep_rate"):
        assert key in known, key
    assert "learning_rat" not in known
