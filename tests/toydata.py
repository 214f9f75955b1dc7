"""Write small RecBole benchmark datasets (atomic files + modality .npy + YAML) for tests, and
build a model on one."""

import os

import numpy as np
import pytest
import torch

#: The toy split's size (:func:`random_splits`, :func:`leak_splits`).
N_USERS, N_ITEMS = 40, 30

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


def leak_splits(n_users=N_USERS, n_items=N_ITEMS, per_user=10, poison=False, seed=0):
    """Every item is in training (so internal ids follow the training file alone); each user
    has ``per_user - 2`` training items, 1 valid and 1 test item. ``poison`` swaps every valid and
    test pair for another pair of the same user that is in no split (the training split stays)."""
    rng = np.random.default_rng(seed)
    splits = {"train": [], "valid": [], "test": []}
    spare = {}
    for u in range(n_users):
        items = rng.permutation(n_items)
        splits["train"] += [(u, int(i)) for i in items[:per_user - 2]]
        splits["valid"].append((u, int(items[per_user - 2])))
        splits["test"].append((u, int(items[per_user - 1])))
        spare[u] = [int(i) for i in items[per_user:per_user + 2]]
    for i in range(n_items):  # make sure every item has a training row
        if all(item != i for _, item in splits["train"]):
            splits["train"].append((i % n_users, i))
    if poison:
        splits["valid"] = [(u, spare[u][0]) for u, _ in splits["valid"]]
        splits["test"] = [(u, spare[u][1]) for u, _ in splits["test"]]
    return splits


def features(names, n_items=N_ITEMS, seed=0):
    """Random features of each modality in ``names``, ``(n_items, 5 + its position)`` float32."""
    rng = np.random.default_rng(seed)
    return {m: rng.normal(size=(n_items, 5 + i)).astype(np.float32) for i, m in enumerate(names)}


def config_for(root, name, model="BPR", **overrides):
    """An :class:`MMConfig` for a test dataset on CPU, writing checkpoints under ``root``."""
    from recbole_gtc.config.configurator import MMConfig

    config_dict = {"data_path": str(root), "use_gpu": False, "checkpoint_dir": os.path.join(str(root), "saved"),
                   "state": "ERROR", "graph_cache_dir": None}
    config_dict.update(overrides)
    return MMConfig(model, name, config_dict=config_dict, cmd_args=[])


def prepare(root, name, model, **overrides):
    """``(config, dataset, train dataloader)`` of ``model`` (a name) on ``root/name``
    (:func:`config_for` with ``overrides``); the torch seed is 0 while the data are prepared."""
    from recbole_gtc.data import create_dataset, data_preparation

    config = config_for(root, name, model=model, **overrides)
    torch.manual_seed(0)
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    return config, dataset, train


def build(root, name, model, seed=0, **overrides):
    """``(model, train dataloader)``: ``model`` (a name) built on ``root/name``'s training split
    (:func:`prepare`), with the torch seed set to ``seed`` first."""
    from recbole_gtc.utils.utils import get_model

    config, _, train = prepare(root, name, model, **overrides)
    torch.manual_seed(seed)
    return get_model(model)(config, train.dataset), train


def toy_model(root, model, modalities=("image", "text"), order_seed=None, **overrides):
    """:func:`build` on ``root/mm``, written first (:func:`random_splits` of ``N_USERS x N_ITEMS``,
    :func:`features` of ``modalities``, lines shuffled by ``order_seed``) unless it exists."""
    if not os.path.exists(os.path.join(root, "mm")):
        write_dataset(root, "mm", random_splits(N_USERS, N_ITEMS), features(modalities), N_ITEMS, order_seed=order_seed)
    return build(root, "mm", model, **overrides)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is ~70x faster than two on a busy 2-core machine
    (OpenMP workers spin); both runs of each comparison use the same setting. Importing it
    into a test module turns it on for that module's tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
