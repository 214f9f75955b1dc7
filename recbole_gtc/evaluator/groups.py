"""Test metrics per user group: who gains and who loses (docs/diagnostics.md, "Who gains").

RecBole averages each metric over all test users. Here the test users are split into groups
and the same per-user values (:mod:`recbole_gtc.evaluator.per_user`, stored by every run in
``test_per_user.npz``) are averaged within each group:

* ``activity``: the user's number of TRAINING interactions, in quintiles over the test users;
* ``popularity``: the mean training popularity (number of training users) of the user's TEST
  items, in quintiles over the test users: users whose held-out items are niche (Q1) or
  mainstream (Q5).

A grouping is a partition of the test users, so the group means weighted by the groups' sizes
give back the overall mean exactly (tested). The per-user values hold one number per user, not
per (user, item), so the item-popularity grouping is over users, by their test items; with one
test item per user (most users of the bundled datasets' 8:1:1 split) it is the item's own group.

Quantile edges are computed on the test users' values; users with equal values always share a
group, so groups of a grouping with many ties (e.g. activity on data with a minimum of 5
interactions) can differ in size, and an empty group is left out.
"""

import csv
import os

import numpy as np
import pandas as pd

from recbole_gtc.utils.files import atomic_write

#: The groupings, in table order: name -> what the value is.
GROUPINGS = {
    "activity": "training interactions of the user",
    "popularity": "mean training popularity of the user's test items",
}
N_GROUPS = 5


def quantile_groups(values, n_groups=N_GROUPS):
    """Group index ``0..n_groups-1`` of each value by its quantile among ``values``.

    Edges are the interior quantiles ``q = 1/n .. (n-1)/n`` (linear interpolation); a value on an
    edge goes to the upper group, so equal values share a group. ``nan`` values get ``-1``.

    Args:
        values (array-like): ``[n]`` numbers.

    Returns:
        (ndarray of int, ndarray): ``[n]`` group of each value and the ``n_groups - 1`` edges.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    groups = np.full(values.shape, -1, dtype=np.int64)
    if not finite.any():
        return groups, np.array([])
    edges = np.quantile(values[finite], np.arange(1, n_groups) / n_groups)
    groups[finite] = np.searchsorted(edges, values[finite], side="right")
    return groups, edges


def user_profiles(train_users, train_items, test_users, test_items):
    """Each user's training activity and the mean training popularity of their test items.

    Args:
        train_users, train_items, test_users, test_items (array-like): ``[nnz]`` tokens (any
            hashable, compared as ``str``) of the training and test interactions.

    Returns:
        dict: user token (str) -> ``{"activity": int, "popularity": float}`` for every user with
        a training or a test interaction (``popularity`` is ``nan`` for a user without test items).
    """
    train_users = np.asarray(train_users).astype(str)
    train_items = np.asarray(train_items).astype(str)
    test_users = np.asarray(test_users).astype(str)
    test_items = np.asarray(test_items).astype(str)
    pairs = np.unique(np.stack([train_users, train_items]), axis=1) if len(train_users) else np.empty((2, 0), str)
    users, counts = np.unique(pairs[0], return_counts=True)
    activity = dict(zip(users, counts.tolist()))
    items, degree = np.unique(pairs[1], return_counts=True)
    popularity = dict(zip(items, degree.tolist()))
    sums, numbers = {}, {}
    for user, item in zip(test_users, test_items):
        sums[user] = sums.get(user, 0.0) + popularity.get(item, 0)
        numbers[user] = numbers.get(user, 0) + 1
    profiles = {}
    for user in set(activity) | set(sums):
        profiles[str(user)] = {
            "activity": int(activity.get(user, 0)),
            "popularity": sums[user] / numbers[user] if user in sums else float("nan"),
        }
    return profiles


def group_table(users, values, profiles, metrics=None, n_groups=N_GROUPS):
    """The metrics' mean per group of every grouping.

    Args:
        users (list of str): the test users' tokens, ``[n]``.
        values (dict): metric -> ``[n]`` per-user values (the order of ``users``).
        profiles (dict): :func:`user_profiles`.
        metrics (list of str, optional): which metrics (default: all of ``values``).

    Returns:
        list of dict: one row per (grouping, group), in :data:`GROUPINGS` order then group
        order: ``grouping``, ``group`` (``Q1``..), ``low`` and ``high`` (the group's smallest
        and largest value of the grouping's quantity), ``n_users``, ``share`` (of the test
        users), then one entry per metric (the group's mean).
    """
    metrics = list(values) if metrics is None else list(metrics)
    users = [str(u) for u in users]
    n = len(users)
    rows = []
    for grouping in GROUPINGS:
        quantity = np.array([profiles.get(u, {}).get(grouping, np.nan) for u in users], dtype=np.float64)
        groups, _ = quantile_groups(quantity, n_groups)
        for g in range(n_groups):
            members = groups == g
            if not members.any():
                continue
            row = {"grouping": grouping, "group": f"Q{g + 1}", "low": float(quantity[members].min()),
                   "high": float(quantity[members].max()), "n_users": int(members.sum()),
                   "share": float(members.sum() / n)}
            row.update({m: float(np.mean(np.asarray(values[m])[members])) for m in metrics})
            rows.append(row)
    return rows


def write_group_csv(path, rows):
    """Write :func:`group_table` rows as CSV (header from the first row), atomically."""
    header = list(rows[0]) if rows else ["grouping", "group", "low", "high", "n_users", "share"]

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                writer.writerow([repr(row[k]) if isinstance(row[k], float) else row[k] for k in header])

    atomic_write(path, write)


def read_split_file(path, user_field, item_field):
    """``(users, items)`` token arrays of one atomic ``.inter`` file (tab separated, typed header)."""
    frame = pd.read_csv(path, sep="\t", dtype=str, usecols=lambda c: c.split(":")[0] in (user_field, item_field))
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame[user_field].to_numpy(), frame[item_field].to_numpy()


def profiles_from_files(data_path, dataset, user_field="user_id", item_field="item_id", splits=("train", "test")):
    """:func:`user_profiles` from a benchmark dataset's ``<dataset>.<split>.inter`` files.

    Args:
        data_path (str): the dataset's folder (``<data_path>/<dataset>`` as RecBole joins it).
        splits (tuple of str): the names of the training and the test split files.
    """
    train = read_split_file(os.path.join(data_path, f"{dataset}.{splits[0]}.inter"), user_field, item_field)
    test = read_split_file(os.path.join(data_path, f"{dataset}.{splits[-1]}.inter"), user_field, item_field)
    return user_profiles(*train, *test)
