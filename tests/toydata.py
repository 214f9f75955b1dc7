"""Write small RecBole benchmark datasets (atomic files + modality .npy + YAML) for tests."""

import os

import numpy as np

YAML = """USER_ID_FIELD: user_id
ITEM_ID_FIELD: item_id
load_col:
  inter: [user_id, item_id]
  item: [item_id]
benchmark_filename: [train, valid, test]
modalities:
{modalities}
eval_protocol: {protocol}
{extra}"""


def write_dataset(root, name, splits, features, n_items, order_seed=None, protocol="mmrec", extra=""):
    """Write ``root/name/`` as a benchmark dataset.

    Args:
        splits (dict): ``train|valid|test`` -> list of ``(user, item)`` integer pairs.
        features (dict): modality -> array ``(n_items, dim)``; row r is item token ``str(r)``.
        order_seed (int, optional): shuffle the lines of every atomic file (changes
            RecBole's internal ids, which follow first appearance).
    Returns:
        str: the dataset folder.
    """
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(order_seed) if order_seed is not None else None

    def lines(rows):
        rows = list(rows)
        if rng is not None:
            rows = [rows[i] for i in rng.permutation(len(rows))]
        return rows

    for split, pairs in splits.items():
        with open(os.path.join(folder, f"{name}.{split}.inter"), "w") as f:
            f.write("user_id:token\titem_id:token\n")
            f.writelines(f"u{u}\t{i}\n" for u, i in lines(pairs))
    with open(os.path.join(folder, f"{name}.item"), "w") as f:
        f.write("item_id:token\n")
        f.writelines(f"{i}\n" for i in lines(range(n_items)))
    for modality, feat in features.items():
        np.save(os.path.join(folder, f"{modality}_feat.npy"), feat)
    mods = "\n".join(f"  {m}: {m}_feat.npy" for m in features)
    with open(os.path.join(folder, f"{name}.yaml"), "w") as f:
        f.write(YAML.format(modalities=mods, protocol=protocol, extra=extra))
    return folder


def random_splits(n_users, n_items, per_user=8, seed=0):
    """Each user gets ``per_user`` distinct items: all but 2 train, then 1 valid, 1 test."""
    rng = np.random.default_rng(seed)
    splits = {"train": [], "valid": [], "test": []}
    for u in range(n_users):
        items = rng.choice(n_items, per_user, replace=False)
        splits["train"] += [(u, int(i)) for i in items[:-2]]
        splits["valid"].append((u, int(items[-2])))
        splits["test"].append((u, int(items[-1])))
    return splits


def config_for(root, name, model="BPR", **overrides):
    """An :class:`MMConfig` for a test dataset on CPU, writing checkpoints under ``root``."""
    from recbole_gtc.config import MMConfig

    config_dict = {"data_path": str(root), "use_gpu": False, "checkpoint_dir": os.path.join(str(root), "saved"),
                   "state": "ERROR", "graph_cache_dir": None}
    config_dict.update(overrides)
    return MMConfig(model, name, config_dict=config_dict, cmd_args=[])
