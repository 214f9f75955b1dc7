"""Configuration validation: every key has a type and an allowed range, checked before any work.

:func:`validate_config` checks a built :class:`~recbole_gtc.config.configurator.MMConfig`:

* **unknown keys** given by the user (``--config_files``, ``config_dict``, ``--KEY=VALUE``)
  are an **error** naming the closest known key, e.g.
  ``unknown key 'learning_rat' (did you mean 'learning_rate'?)``. A key is known when
  RecBole knows it (its property YAMLs, its argument lists and the keys its code reads),
  when this package knows it (``properties/``, any model YAML there, any model's rules), or
  when the dataset's YAML sets it. An error rather than a warning: a misspelt key would
  otherwise train with the default and publish a number for a configuration nobody ran.
* **values**: each key that the configuration holds and that has a rule is checked against
  it: :data:`COMMON_KEYS` (RecBole's common keys and this package's) for every model, plus
  the model's own rules (:func:`rules_for`); a bad value is ``<key>=<value>: <what is allowed>``.
  Models read their keys without checking them again.
* a few **cross-key** rules (``valid_metric`` among ``metrics`` x ``topk``, GTC's
  ``beta_start < beta_end``, ``eval_timestep < noise_steps``).

Every problem is a :class:`~recbole_gtc.utils.errors.RecboleGTCError` with a one-line message;
the runner prints ``error: <message>`` and exits 2.

Adding a model's keys: this package's models carry their rules next to them, as the class
attribute ``config_rules = {key: rule, ...}`` (rules from the helpers below: :func:`integer`,
:func:`number`, :func:`boolean`, :func:`choice`, ...; the MMRec baselines reuse
:data:`MMREC_KEYS`); RecBole's models have theirs in :data:`SCHEMA`. Keys in a model YAML
under ``properties/model/`` are known (not "unknown") even before they get a rule.
"""

import difflib
import glob
import os
from functools import lru_cache

import recbole
import yaml
from recbole.evaluator.register import metric_types
from recbole.utils import EvaluatorType, InputType, argument_list

from recbole_gtc.config.rules import (_is_int, _is_number, _optional, boolean, choice, int_or_int_list, integer,
                                      mapping, number, string)
from recbole_gtc.utils.errors import RecboleGTCError
from recbole_gtc.utils.utils import _PLUGIN_MODELS, PROPERTIES_DIR, get_model


def metrics_rule(value):
    names = metric_types
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        return "must be a metric name or a non-empty list of them (e.g. [Recall, NDCG])"
    unknown = [v for v in values if v.lower() not in names]
    if unknown:
        return f"{unknown[0]!r} is not a RecBole metric (known: {', '.join(sorted(names))})"
    kinds = {names[v.lower()] for v in values}
    if len(kinds) > 1:
        return "ranking metrics (Recall, NDCG, ...) and value metrics (AUC, RMSE, ...) cannot be mixed"
    return None


def _neg_sample_rule(value):
    if value is None or value == "None":
        return None
    if not isinstance(value, dict):
        return "must be a mapping {distribution: uniform|popularity, sample_num: N, ...} or ~"
    distribution = value.get("distribution", "uniform")
    if distribution not in ("uniform", "popularity", "none", None, "None"):
        return "distribution must be uniform or popularity"
    sample_num = value.get("sample_num", 1)
    if sample_num != "none" and not (_is_int(sample_num) and sample_num >= 1):
        return "sample_num must be an integer >= 1"
    return None


def _eval_args_rule(value):
    if not isinstance(value, dict):
        return "must be a mapping {split, group_by, order, mode}"
    if value.get("order", "RO") not in ("RO", "TO"):
        return "order must be RO or TO"
    if value.get("group_by", "user") not in ("user", "none", None):
        return "group_by must be user or none"
    modes = value.get("mode", "full")
    modes = modes.values() if isinstance(modes, dict) else [modes]
    for mode in modes:
        ok = isinstance(mode, str) and (
            mode in ("full", "labeled") or (mode[:3] in ("uni", "pop") and mode[3:].isdigit() and int(mode[3:]) > 0)
        )
        if not ok:
            return "mode must be full, labeled, uniN or popN (N >= 1), or {valid: ..., test: ...}"
    return None


def _state_rule(value):
    if value is None or (isinstance(value, str) and value.lower() in ("info", "debug", "warning", "error", "critical")):
        return None
    return "must be one of INFO | DEBUG | WARNING | ERROR | CRITICAL"


def _modalities_rule(value):
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        return "must map modality names to .npy files, e.g. {image: image_feat.npy, text: text_feat.npy}"
    for name, fname in value.items():
        if not isinstance(fname, str) or not fname:
            return f"entry {name}={fname!r} must be a .npy file name"
    return None


def _gpu_id_rule(value):
    if _is_int(value) or isinstance(value, (str, tuple)):
        return None
    return "must be a GPU id such as 0 or '0,1'"


def _seed_rule(value):
    return None if _is_int(value) and 0 <= value < 2 ** 32 else "must be an integer in [0, 2**32 - 1]"


# --------------------------------------------------------------------------- the schema

#: Keys every model reads: RecBole's common ones and this package's (properties/overall.yaml).
COMMON_KEYS = {
    # environment
    "seed": _seed_rule,
    "reproducibility": boolean(),
    "use_gpu": boolean(),
    "gpu_id": _gpu_id_rule,
    "worker": integer(0),
    "state": _state_rule,
    "show_progress": boolean(),
    "data_path": string(),
    "checkpoint_dir": string(),
    "save_dataset": boolean(),
    "save_dataloaders": boolean(),
    "dataset_save_path": string(optional=True),
    "dataloaders_save_path": string(optional=True),
    "log_wandb": boolean(),
    "shuffle": boolean(),
    # training
    "epochs": integer(1),
    "train_batch_size": integer(1),
    "learner": choice("adam", "adamw", "sgd", "adagrad", "rmsprop", "sparse_adam", ignore_case=True),
    "learning_rate": number(0, low_open=True),
    "weight_decay": number(0),
    "eval_step": integer(0),
    "stopping_step": integer(0),
    "clip_grad_norm": mapping(optional=True),
    "loss_decimal_place": integer(0),
    "require_pow": boolean(),
    "enable_amp": boolean(),
    "enable_scaler": boolean(),
    "diagnostics": boolean(),
    "mixed_precision": choice("none", "bf16", "fp16", optional=True, ignore_case=True),
    "train_neg_sample_args": _neg_sample_rule,
    # evaluation
    "eval_args": _eval_args_rule,
    "repeatable": boolean(),
    "metrics": metrics_rule,
    "topk": int_or_int_list(1),
    "valid_metric": string(),
    "valid_metric_bigger": boolean(),
    "eval_batch_size": integer(1),
    "metric_decimal_place": integer(0),
    # models (RecBole's general recommenders share these names)
    "embedding_size": integer(1),
    # this package
    "eval_protocol": choice("mmrec", "recbole", optional=True),
    "best_on_tie": choice("later", "earlier"),
    "drop_leaked": boolean(),
    "modalities": _modalities_rule,
    "benchmark_filename": _optional(
        lambda v: None if isinstance(v, list) and len(v) == 3 and all(isinstance(s, str) and s for s in v)
        else "must name the three split files, train, valid and test, e.g. [train, valid, test]", True),
}

#: RecBole's models: name -> {key: rule} (this package's models carry theirs, ``config_rules``).
SCHEMA = {
    "LightGCN": {"n_layers": integer(0), "reg_weight": number(0)},
    "NGCF": {"reg_weight": number(0)},
    "BPR": {},
}

#: RecBole keys that RecBole's code reads but no YAML of it sets.
_RECBOLE_CODE_KEYS = {
    "model", "dataset", "config_files", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "device", "single_spec",
    "valid_neg_sample_args", "test_neg_sample_args", "verbose", "encoding", "token_num_threshold", "feature_num",
    "cin", "contrast", "eta", "has_residual", "norm", "sim", "tail_ratio", "use_filter", "xgb_early_stopping_rounds",
}

#: RecBole's distributed-training keys: set by the runner's flags (--nproc, --world_size, --ip,
#: --port, --group_offset; :mod:`recbole_gtc.quick_start.distributed`), never as configuration keys.
UNSUPPORTED_KEYS = ("local_rank", "nproc", "ip", "port", "world_size", "offset", "group_offset")


@lru_cache(maxsize=1)
def _static_known_keys():
    keys = set(_RECBOLE_CODE_KEYS)
    for name in ("general_arguments", "training_arguments", "evaluation_arguments", "dataset_arguments"):
        keys.update(getattr(argument_list, name))
    recbole_props = os.path.join(os.path.dirname(recbole.__file__), "properties")
    files = glob.glob(os.path.join(recbole_props, "**", "*.yaml"), recursive=True)
    files = [f for f in files if not os.path.basename(f).endswith("url.yaml")]  # dataset name -> URL tables
    files += glob.glob(os.path.join(PROPERTIES_DIR, "**", "*.yaml"), recursive=True)
    for path in files:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=yaml.FullLoader)
        if isinstance(data, dict):
            keys.update(str(k) for k in data)
    for rules in SCHEMA.values():
        keys.update(rules)
    for model in _PLUGIN_MODELS:
        keys.update(get_model(model).config_rules)
    return frozenset(keys)


def known_keys(config=None):
    """Every key RecBole, this package or (given ``config``) the run's dataset YAML knows."""
    keys = set(_static_known_keys())
    if config is not None:
        keys.update(getattr(config, "internal_config_dict", {}) or {})
        keys.update(getattr(config, "parameters", {}).get("Dataset", []))
    return keys


def unknown_key_message(key, known):
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    if close:
        return f"unknown key '{key}' (did you mean '{close[0]}'?)"
    return f"unknown key '{key}' (not a RecBole, recbole-gtc or dataset key)"


def check_keys(external, known):
    """Refuse unsupported (distributed) keys and keys nobody knows."""
    for key in external:
        if key in UNSUPPORTED_KEYS:
            raise RecboleGTCError(f"{key}={external[key]!r}: not a configuration key; multi-process training is "
                                  f"set up by the runner's flags --nproc, --world_size, --ip, --port, --group_offset")
    for key in external:
        if key not in known:
            raise RecboleGTCError(unknown_key_message(key, known))


def rules_for(model):
    """``{key: rule}`` for ``model`` (a name): :data:`COMMON_KEYS` and the model's own rules."""
    rules = dict(COMMON_KEYS)
    rules.update(get_model(model).config_rules if model in _PLUGIN_MODELS else SCHEMA.get(model, {}))
    return rules


def check_values(values, model, keys=None):
    """Check every key of ``values`` that has a rule (only ``keys`` when given)."""
    rules = rules_for(model)
    for key in keys if keys is not None else list(values):
        if key in rules and key in values:
            problem = rules[key](values[key])
            if problem is not None:
                raise RecboleGTCError(f"{key}={values[key]!r}: {problem}")


def _valid_metric_names(metrics, topk):
    names = metric_types

    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    topk = [topk] if _is_int(topk) else list(topk)
    allowed = []
    for m in metrics:
        m = m.lower()
        if names.get(m) == EvaluatorType.RANKING and m != "gauc":
            allowed += [f"{m}@{k}" for k in topk]
        else:
            allowed.append(m)
    return allowed


def check_cross(values, model):
    """Rules that relate several keys."""
    if "valid_metric" in values and "metrics" in values and "topk" in values:
        valid = values["valid_metric"]
        allowed = _valid_metric_names(values["metrics"], values["topk"])
        if not isinstance(valid, str) or valid.lower() not in allowed:
            shown = ", ".join(allowed[:24]) + (", ..." if len(allowed) > 24 else "")
            raise RecboleGTCError(
                f"valid_metric={valid!r}: must be one of the evaluated metrics, metrics x topk ({shown})")
    load_col = values.get("load_col")
    if isinstance(load_col, dict) and isinstance(load_col.get("inter"), list):
        missing = [values.get(f) for f in ("USER_ID_FIELD", "ITEM_ID_FIELD") if values.get(f) not in load_col["inter"]]
        if missing:
            raise RecboleGTCError(f"load_col={load_col!r}: inter must load the id field(s) {', '.join(missing)}")

    neg = values.get("train_neg_sample_args")
    if values.get("MODEL_INPUT_TYPE") == InputType.PAIRWISE and (
        neg is None or (isinstance(neg, dict) and neg.get("distribution") in ("none", None))
    ):
        raise RecboleGTCError(
            f"train_neg_sample_args=None: {model} trains on (user, positive, negative) triples and needs "
            f"negative sampling, e.g. {{distribution: uniform, sample_num: 1}}"
        )
    check_precision(values, model)
    if model == "GTC":
        if _is_number(values.get("beta_start")) and _is_number(values.get("beta_end")):
            if values["beta_start"] >= values["beta_end"]:
                raise RecboleGTCError(
                    f"beta_start={values['beta_start']!r}: must be smaller than beta_end={values['beta_end']!r}")
        t, n = values.get("eval_timestep"), values.get("noise_steps")
        if _is_int(t) and _is_int(n) and t >= n:
            raise RecboleGTCError(f"eval_timestep={t!r}: must be < noise_steps={n} (or ~ for noise_steps // 2)")


#: RecBole's models that train in mixed precision: one training step under CPU bf16 and fp16
#: autocast measured finite (LightGCN, NGCF and SGL fail in their sparse products). The
#: plugin's models say it themselves (``supports_mixed_precision``: GTC and VBPR).
RECBOLE_MIXED_PRECISION_MODELS = ("BPR",)


def mixed_precision_models():
    """The models ``mixed_precision: bf16 | fp16`` is accepted for, in a stable order."""
    plugin = [name for name in _PLUGIN_MODELS if getattr(get_model(name), "supports_mixed_precision", False)]
    return plugin + list(RECBOLE_MIXED_PRECISION_MODELS)


def check_precision(values, model):
    """``mixed_precision`` only for a model that trains in it; RecBole's own switches refused.

    RecBole's ``enable_amp`` is fp16 autocast on CUDA without loss scaling and without the
    checks below, and ``enable_scaler`` its loss scaling alone; ``mixed_precision`` does both
    (recbole_gtc.trainer.trainer.MMTrainer)."""
    if values.get("enable_amp") is True:
        raise RecboleGTCError("enable_amp=True: RecBole's autocast switch (fp16 on CUDA without loss scaling) is not "
                              "used by recbole-gtc; use mixed_precision=bf16, or mixed_precision=fp16 on CUDA "
                              "(with loss scaling)")
    if values.get("enable_scaler") is True:
        raise RecboleGTCError("enable_scaler=True: RecBole's loss-scaling switch is not used by recbole-gtc; "
                              "mixed_precision=fp16 scales the loss itself")
    mode = values.get("mixed_precision")
    if mode is None or str(mode).lower() == "none":
        return
    allowed = mixed_precision_models()
    if model not in allowed:
        raise RecboleGTCError(f"mixed_precision={mode}: {model} does not train in mixed precision (its first backward "
                              f"fails or it has no training loop of recbole-gtc's); models that do: "
                              f"{', '.join(allowed)}; use mixed_precision=none")
    device = values.get("device")
    if str(mode).lower() == "fp16" and device is not None and getattr(device, "type", str(device)) != "cuda":
        # fp16 autocast on a CPU is emulated on almost every CPU (slower than float32).
        raise RecboleGTCError("mixed_precision=fp16 needs a CUDA device; use bf16 on CPU")


def check_against_dataset(config, dataset):
    """Rules that need the loaded dataset: under full ranking every k of ``topk`` must be at
    most the number of items (RecBole's evaluation fails with ``selected index k out of range``)."""
    topk = config["topk"]
    topk = [topk] if _is_int(topk) else list(topk or [])
    modes = config["eval_args"]["mode"] if isinstance(config["eval_args"], dict) else {}
    modes = modes.values() if isinstance(modes, dict) else [modes]
    n_items = dataset.item_num - 1  # internal id 0 is padding
    if topk and "full" in modes and max(topk) > n_items:
        raise RecboleGTCError(
            f"topk={config['topk']!r}: must be <= the number of items ({n_items}) of dataset "
            f"'{config['dataset']}' (full ranking)"
        )


#: What RecBole's own Config checks while it is built (it raises Python errors for bad
#: values): checked first by :class:`~recbole_gtc.config.configurator.MMConfig` so they fail in this form.
RECBOLE_CHECKED_KEYS = ("metrics", "topk", "valid_metric", "eval_args", "train_neg_sample_args", "gpu_id")


def check_before_recbole(final_config_dict, external_config_dict, model):
    """The checks :class:`MMConfig` runs before RecBole's own (which raise Python errors)."""
    check_keys({k: v for k, v in external_config_dict.items() if k in UNSUPPORTED_KEYS}, ())
    check_values(final_config_dict, model, keys=RECBOLE_CHECKED_KEYS)

    metrics = final_config_dict.get("metrics")
    metrics = [metrics] if isinstance(metrics, str) else metrics
    if metrics and metric_types.get(metrics[0].lower()) == EvaluatorType.VALUE:
        modes = final_config_dict["eval_args"].get("mode", "full")
        if "full" in (modes.values() if isinstance(modes, dict) else [modes]):
            raise RecboleGTCError(
                f"metrics={final_config_dict['metrics']!r}: value metrics (AUC, LogLoss, MAE, RMSE) cannot be "
                f"used with full ranking (eval_args mode: full); use ranking metrics (Recall, NDCG, ...)"
            )


def validate_config(config):
    """Check a built config: unknown keys, every value against its rule (:func:`rules_for`), cross-key rules.

    Args:
        config (recbole.config.Config): typically an :class:`~recbole_gtc.config.configurator.MMConfig`.

    Raises:
        RecboleGTCError: ``unknown key '<key>' (did you mean '<known>'?)`` or
        ``<key>=<value>: <what is allowed>``.
    """
    model = config["model"]
    external = getattr(config, "external_config_dict", {}) or {}
    check_keys(external, known_keys(config))
    values = config.final_config_dict
    # user-given keys first, so the message names what the user typed
    check_values(values, model, keys=list(external) + [k for k in values if k not in external])
    check_cross(values, model)
