"""The checks ``python -m recbole_gtc.prepare mmrec`` makes, made again on the splits RecBole built.

A dataset folder written by hand (or by another tool) reaches the runner without the import's
checks. :func:`check_splits` runs on the three splits RecBole built from the atomic files,
before any sampler, model or training exists:

* An empty split. **Refused** (RecBole would train every epoch and then fail to evaluate).
* A (user, item) pair in more than one split: a test pair that is also trained on inflates
  every metric. **Refused**, naming the splits, the counts and one example; with
  ``drop_leaked: True``, **dropped** from its later split(s) instead (kept in the earliest:
  train, then valid) and reported, as ``prepare mmrec --drop-leaked`` does.
* Duplicate (user, item) rows within a split: **reported** (``warning``) and kept as RecBole
  reads them.
* Valid/test rows of users without a training row: **reported and left out of evaluation**,
  as ``prepare mmrec`` (and MMRec) drop them. Such a user's embedding is never trained, so its
  ranking is that of random initial weights: scoring it measures nothing about the model, and
  dropping (rather than refusing) gives a hand-made folder the numbers the same data gets
  through ``prepare mmrec``. A split left empty by this is refused.
* A user who has every item training negatives are drawn from: no negative can be sampled.
  **Refused**, naming the user (RecBole's own sampler fails later with a traceback).

Items without training rows are allowed (cold-start items: their features still place them).
Everything the models build from interactions (graphs, samplers) reads the training split only.
"""

import os
from logging import getLogger

import numpy as np
import torch

from recbole_gtc.utils.errors import RecboleGTCError

#: Pairs, users or rows named in a message, at most.
EXAMPLES = 1


def split_names(config):
    """The three splits' names: ``benchmark_filename`` (split files) or RecBole's own split."""
    return list(config["benchmark_filename"] or ("train", "valid", "test"))


def split_files(config):
    """The file each split comes from, for messages: the split files, or the one ``.inter``."""
    folder, name = config["data_path"], config["dataset"]
    if config["benchmark_filename"]:
        return [os.path.join(folder, f"{name}.{split}.inter") for split in config["benchmark_filename"]]
    return [os.path.join(folder, f"{name}.inter")] * 3


def _ids(dataset):
    inter = dataset.inter_feat
    return (inter[dataset.uid_field].numpy().astype(np.int64), inter[dataset.iid_field].numpy().astype(np.int64))


def _token(dataset, field, internal_id):
    return str(dataset.id2token(field, [int(internal_id)])[0])


def check_splits(config, dataset, built, logger=None):
    """Check (and where said above, reduce) RecBole's ``[train, valid, test]`` datasets.

    Args:
        config (Config): the run's configuration.
        dataset (Dataset): the whole dataset ``built`` came from.
        built (list of Dataset): ``dataset.build()``'s three splits.
        logger (logging.Logger, optional): where warnings go (default: the root logger, i.e.
            the console and the run's ``run.log``).

    Returns:
        list of Dataset: the three splits, valid and test without rows of users who have no
        training row.

    Raises:
        RecboleGTCError: one line naming the file(s) and the problem.
    """
    logger = logger or getLogger()
    names, files = split_names(config), split_files(config)
    if len(built) != 3:
        return built
    for split, part, path in zip(names, built, files):
        if len(part.inter_feat) == 0:
            raise RecboleGTCError(f"{path}: the {split} split has no rows; training would run for nothing "
                                  f"(nothing to {'train on' if split == names[0] else 'evaluate'})")
    n_items = int(dataset.item_num)
    if config["drop_leaked"]:
        built = _drop_leaked(dataset, names, files, built, n_items, logger)
    ids = [_ids(part) for part in built]
    keys = [users * n_items + items for users, items in ids]
    _refuse_shared_pairs(config, dataset, names, files, keys, n_items)
    _report_duplicates(dataset, names, files, keys, n_items, logger)
    built = _drop_cold_users(dataset, names, files, built, ids, logger)
    _refuse_users_with_every_item(config, dataset, files[0], keys[0], n_items)
    return built


def _refuse_shared_pairs(config, dataset, names, files, keys, n_items):
    uniques = [np.unique(k) for k in keys]
    every = np.concatenate(uniques)
    bits = np.concatenate([np.full(len(u), 1 << i, dtype=np.int64) for i, u in enumerate(uniques)])
    pairs, inverse = np.unique(every, return_inverse=True)
    masks = np.bincount(inverse, weights=bits, minlength=len(pairs)).astype(np.int64)
    shared = ~np.isin(masks, (1, 2, 4))
    if not shared.any():
        return
    combo = {m: "+".join(name for i, name in enumerate(names) if m >> i & 1) for m in range(8)}
    values, counts = np.unique(masks[shared], return_counts=True)
    listing = ", ".join(f"{combo[int(m)]}: {int(n)}" for m, n in sorted(zip(values, counts), key=lambda p: combo[p[0]]))
    first = int(np.flatnonzero(shared)[0])
    user = _token(dataset, dataset.uid_field, pairs[first] // n_items)
    item = _token(dataset, dataset.iid_field, pairs[first] % n_items)
    if config["benchmark_filename"]:
        fix = ("fix the split files, or set drop_leaked: True (--drop_leaked=True) to keep each pair in its "
               "earliest split only")
    else:
        fix = "the file has duplicate (user, item) rows that RecBole's split put apart: set rm_dup_inter: first"
    raise RecboleGTCError(
        f"{os.path.dirname(files[0])}: {int(shared.sum())} (user, item) pair(s) appear in more than one split "
        f"({listing}; e.g. user {user} item {item} in {combo[int(masks[first])]}), so evaluation "
        f"would score pairs the model trained on; {fix}"
    )


def _drop_leaked(dataset, names, files, built, n_items, logger):
    """``drop_leaked: True``: valid and test without the rows whose pair an earlier split holds."""
    train_users, train_items = _ids(built[0])
    out, earlier = [built[0]], np.unique(train_users * n_items + train_items)
    for split, part, path in zip(names[1:], built[1:], files[1:]):
        users, items = _ids(part)
        key = users * n_items + items
        leaked = np.isin(key, earlier)
        if leaked.any():
            first = int(np.flatnonzero(leaked)[0])
            logger.warning(
                f"{path}: {int(leaked.sum())} {split} row(s) whose (user, item) pair an earlier split holds dropped "
                f"(drop_leaked: True; e.g. user {_token(dataset, dataset.uid_field, users[first])} item "
                f"{_token(dataset, dataset.iid_field, items[first])})")
            if leaked.all():
                raise RecboleGTCError(f"{path}: every row of the {split} split is a pair an earlier split holds; "
                                      "nothing is left to evaluate")
            part = part.copy(part.inter_feat[torch.from_numpy(~leaked)])
            key = key[~leaked]
        out.append(part)
        earlier = np.union1d(earlier, key)
    return out


def _report_duplicates(dataset, names, files, keys, n_items, logger):
    found = {}
    for name, key in zip(names, keys):
        values, counts = np.unique(key, return_counts=True)
        if (counts > 1).any():
            found[name] = (int((counts - 1).sum()), int(values[np.argmax(counts > 1)]))
    if not found:
        return
    listing = ", ".join(f"{name} {n}" for name, (n, _) in found.items())
    name, (_, key) = next(iter(found.items()))
    user = _token(dataset, dataset.uid_field, key // n_items)
    item = _token(dataset, dataset.iid_field, key % n_items)
    logger.warning(
        f"{os.path.dirname(files[0])}: {sum(n for n, _ in found.values())} duplicate (user, item) row(s) within a "
        f"split ({listing}; e.g. user {user} item {item} in {name}); kept as RecBole reads them (a duplicate "
        f"training row weighs twice); python -m recbole_gtc.prepare mmrec keeps each pair once"
    )


def _drop_cold_users(dataset, names, files, built, ids, logger):
    train_users = np.unique(ids[0][0])
    out = [built[0]]
    for split, part, path, (users, _) in zip(names[1:], built[1:], files[1:], ids[1:]):
        known = np.isin(users, train_users)
        if known.all():
            out.append(part)
            continue
        cold = np.unique(users[~known])
        example = _token(dataset, dataset.uid_field, cold[0])
        logger.warning(
            f"{path}: {int((~known).sum())} {split} row(s) of {len(cold)} user(s) without training rows (e.g. user "
            f"{example}) left out of evaluation: the model learns nothing about such a user (python -m "
            f"recbole_gtc.prepare mmrec drops these rows too)"
        )
        if known.sum() == 0:
            raise RecboleGTCError(f"{path}: the {split} split has no rows of users with training rows; "
                                  f"nothing to evaluate")
        out.append(part.copy(part.inter_feat[torch.from_numpy(known)]))
    return out


def _refuse_users_with_every_item(config, dataset, path, train_keys, n_items):
    args = config["train_neg_sample_args"] or {}
    if args.get("distribution", "none") == "none" or not len(train_keys):
        return
    pairs = np.unique(train_keys)
    users, items = pairs // n_items, pairs % n_items
    if (config["eval_protocol"] or "recbole") == "mmrec":
        candidates = len(np.unique(items))  # MMRec draws negatives among the items seen in training
    else:
        candidates = n_items - 1  # every item id but the padding id 0
    per_user = np.bincount(users)
    full = np.flatnonzero(per_user >= candidates)
    if len(full):
        user = _token(dataset, dataset.uid_field, full[0])
        raise RecboleGTCError(
            f"{path}: user {user}{f' and {len(full) - 1} more' if len(full) > 1 else ''} has interacted with every "
            f"item training negatives are drawn from ({candidates}), so no negative item can be sampled for it; "
            f"remove such users' rows from the dataset"
        )
