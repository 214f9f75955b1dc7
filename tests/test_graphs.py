"""Item-item kNN graph and user-user co-interaction graph (recbole_gtc/model/layers/graphs.py)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recbole_gtc.model.layers import graphs
from recbole_gtc.model.layers.graphs import UserGraph, item_item_graph, knn_graph, user_user_graph


def _dense_knn(features, k):
    """Brute force: dense cosine, topk, weight 1/k."""
    normed = F.normalize(features.double(), dim=1)
    sims = normed @ normed.T
    idx = sims.topk(k, dim=1).indices
    dense = torch.zeros(features.shape[0], features.shape[0], dtype=torch.float64)
    dense.scatter_(1, idx, 1.0 / k)
    return dense


@pytest.mark.parametrize("chunk", [1, 7, 40, 1000])
def test_knn_graph_equals_dense_bruteforce(chunk):
    feats = torch.randn(40, 12, generator=torch.Generator().manual_seed(0))
    graph = knn_graph(feats, 5, chunk_size=chunk)
    assert graph.is_sparse and graph.is_coalesced() and graph.shape == (40, 40)
    torch.testing.assert_close(graph.to_dense().double(), _dense_knn(feats, 5))
    assert torch.all(graph.to_dense().diagonal() == 0.2)  # self is its own nearest neighbour


def test_knn_graph_zero_rows_and_ties_are_finite_and_deterministic():
    feats = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
    feats[3] = 0
    feats[7] = feats[2]  # an exact tie
    graph = knn_graph(feats, 3, chunk_size=4).to_dense()
    assert torch.isfinite(graph).all()
    torch.testing.assert_close(graph.sum(1), torch.ones(10))  # exactly k edges of 1/k per row
    assert graph[3].nonzero().flatten().tolist() == [0, 1, 2]  # zero row: all ties, smallest ids
    torch.testing.assert_close(graph, knn_graph(feats, 3, chunk_size=10).to_dense())


def test_knn_graph_clamps_k_to_n():
    graph = knn_graph(torch.randn(3, 4), 10).to_dense()
    torch.testing.assert_close(graph, torch.full((3, 3), 1 / 3))


def _modalities(seed=0, n=30):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(n, 16, generator=g), "text": torch.randn(n, 6, generator=g)}


def test_item_item_graph_is_weighted_sum():
    feats = _modalities()
    weights = {"image": 0.1, "text": 0.9}
    graph = item_item_graph(feats, 4, weights, chunk_size=8)
    assert graph.is_coalesced()
    expected = 0.1 * _dense_knn(feats["image"], 4) + 0.9 * _dense_knn(feats["text"], 4)
    torch.testing.assert_close(graph.to_dense().double(), expected)
    with pytest.raises(ValueError):
        item_item_graph(feats, 4, {"image": 1.0})


def test_item_item_graph_cache_hits_and_misses(tmp_path, monkeypatch):
    calls = []
    real = graphs.knn_graph

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(graphs, "knn_graph", counting)
    feats = _modalities()
    weights = {"image": 0.1, "text": 0.9}
    first = item_item_graph(feats, 4, weights, cache_dir=str(tmp_path))
    assert len(calls) == 2
    again = item_item_graph({m: f.clone() for m, f in feats.items()}, 4, dict(weights), cache_dir=str(tmp_path))
    assert len(calls) == 2  # hit
    torch.testing.assert_close(again.to_dense(), first.to_dense())

    reweighted = item_item_graph(feats, 4, {"image": 0.5, "text": 0.5}, cache_dir=str(tmp_path))
    assert len(calls) == 4  # a different weight misses
    assert not torch.allclose(reweighted.to_dense(), first.to_dense())
    item_item_graph(feats, 5, weights, cache_dir=str(tmp_path))
    assert len(calls) == 6  # a different k misses
    changed = dict(feats, text=feats["text"] + 1.0)
    item_item_graph(changed, 4, weights, cache_dir=str(tmp_path))
    assert len(calls) == 8  # different features miss


# A toy training set (5 users, 6 items). Co-interaction counts (R R^T, off-diagonal):
# u0: u1=2, u2=1, u3=1      (more than k=2 neighbours, tie between u2 and u3 at count 1)
# u1: u0=2, u2=1
# u2: u0=1, u1=1, u3=1       (three-way tie)
# u3: u0=1, u2=1
# u4: none
TRAIN = [(0, 0), (0, 1), (0, 2), (0, 0), (1, 0), (1, 1), (2, 1), (2, 3), (3, 2), (3, 3), (4, 5)]
TEST = [(4, 0), (1, 3)]


def _dense_counts(pairs, n_users=5, n_items=6):
    r = np.zeros((n_users, n_items))
    for u, i in pairs:
        r[u, i] = 1
    c = r @ r.T
    np.fill_diagonal(c, 0)
    return c


def _expected_lists(counts, k):
    """Top-k by count, ties to the smaller id, from a dense count matrix."""
    lists = []
    for row in counts:
        order = sorted((-row[v], v) for v in range(len(row)) if row[v] > 0)
        lists.append([(v, -c) for c, v in order[:k]])
    return lists


def _lists(graph):
    indptr, indices, counts = graph.neighbours
    return [
        [(int(v), float(c)) for v, c in zip(indices[indptr[u]:indptr[u + 1]], counts[indptr[u]:indptr[u + 1]])]
        for u in range(len(indptr) - 1)
    ]


@pytest.mark.parametrize("k", [1, 2, 3, 40])
def test_user_graph_topk_matches_dense_counts(k):
    users, items = np.array(TRAIN).T
    graph = user_user_graph(users, items, 5, 6, k=k)
    assert _lists(graph) == _expected_lists(_dense_counts(TRAIN), k)
    if k == 2:
        assert _lists(graph)[0] == [(1, 2.0), (2, 1.0)]  # u2 beats u3 on the tie
        assert _lists(graph)[4] == []


def test_user_graph_uses_only_the_interactions_it_is_given(tmp_path):
    users, items = np.array(TRAIN).T
    train_only = user_user_graph(torch.from_numpy(users), torch.from_numpy(items), 5, 6, k=3, cache_dir=str(tmp_path))
    all_users, all_items = np.array(TRAIN + TEST).T
    with_test = user_user_graph(all_users, all_items, 5, 6, k=3, cache_dir=str(tmp_path))
    assert _lists(train_only) != _lists(with_test)  # the test pairs would change it ...
    assert _lists(train_only) == _expected_lists(_dense_counts(TRAIN), 3)  # ... but only train was used
    assert _lists(with_test) == _expected_lists(_dense_counts(TRAIN + TEST), 3)
    # The cache returns the same lists, keyed on the interactions.
    assert _lists(user_user_graph(users, items, 5, 6, k=3, cache_dir=str(tmp_path))) == _lists(train_only)


@pytest.mark.parametrize("k", [2, 4])  # k=2: u0 has more than k neighbours; k=4: everyone is padded
def test_sample_shapes_weights_padding_and_determinism(k):
    users, items = np.array(TRAIN).T
    graph = user_user_graph(users, items, 5, 6, k=k)
    index, weight = graph.sample(generator=torch.Generator().manual_seed(0))
    assert index.shape == (5, k) and weight.shape == (5, k)
    assert index.dtype == torch.long and weight.dtype == torch.float32
    torch.testing.assert_close(weight.sum(1), torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0]))
    assert torch.all(index[4] == 0)
    lists = _lists(graph)
    for u in range(4):
        own = dict(lists[u])
        kept = [v for v, _ in lists[u]]
        assert index[u, : len(kept)].tolist() == kept  # the real neighbours first, in order
        assert set(index[u].tolist()) <= set(own)  # padding only re-draws the user's own neighbours
        counts = torch.tensor([own[v] for v in index[u].tolist()])
        torch.testing.assert_close(weight[u], torch.softmax(counts, 0))
    again = graph.sample(generator=torch.Generator().manual_seed(0))
    assert torch.equal(index, again[0]) and torch.equal(weight, again[1])


def test_sample_padding_is_random_per_epoch():
    # u0 has 2 neighbours, padded to 20: different seeds give different paddings.
    graph = UserGraph([0, 2, 3, 4], [1, 2, 0, 0], [3.0, 1.0, 3.0, 1.0], k=20)
    draws = {tuple(graph.sample(generator=torch.Generator().manual_seed(s))[0][0].tolist()) for s in range(5)}
    assert len(draws) > 1
    for padded in draws:
        assert padded[:2] == (1, 2) and set(padded) == {1, 2}


# ----------------------------------------------------------------- corrupt caches are rebuilt


def _corrupt(path, how):
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # flip bytes in the middle: same size, readable container, wrong content
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 16]) + data[middle + 16:])


@pytest.mark.parametrize("how", ["truncate", "empty", "flip"])
def test_corrupt_item_graph_cache_is_rebuilt_and_rewritten(tmp_path, monkeypatch, how):
    feats, weights = _modalities(), {"image": 0.1, "text": 0.9}
    fresh = item_item_graph(feats, 4, weights, cache_dir=str(tmp_path)).to_dense()
    (cache,) = tmp_path.glob("item_graph_*.pt")
    _corrupt(cache, how)
    calls = []
    real = graphs.knn_graph
    monkeypatch.setattr(graphs, "knn_graph", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    rebuilt = item_item_graph(feats, 4, weights, cache_dir=str(tmp_path))
    assert len(calls) == 2, "a corrupt cache file must not be trusted"
    assert torch.equal(rebuilt.to_dense(), fresh)
    assert [p.name for p in tmp_path.iterdir()] == [cache.name]  # rewritten in place, no temp file left
    again = item_item_graph(feats, 4, weights, cache_dir=str(tmp_path))
    assert len(calls) == 2 and torch.equal(again.to_dense(), fresh)  # the rewritten file is a hit


@pytest.mark.parametrize("how", ["truncate", "empty", "flip"])
def test_corrupt_user_graph_cache_is_rebuilt_and_rewritten(tmp_path, monkeypatch, how):
    users, items = np.array(TRAIN).T
    fresh = _lists(user_user_graph(users, items, 5, 6, k=3, cache_dir=str(tmp_path)))
    (cache,) = tmp_path.glob("user_graph_*.npz")
    _corrupt(cache, how)
    calls = []
    real = graphs._top_neighbours
    monkeypatch.setattr(graphs, "_top_neighbours", lambda *a: calls.append(1) or real(*a))
    assert _lists(user_user_graph(users, items, 5, 6, k=3, cache_dir=str(tmp_path))) == fresh
    assert len(calls) == 1, "a corrupt cache file must not be trusted"
    assert [p.name for p in tmp_path.iterdir()] == [cache.name]
    assert _lists(user_user_graph(users, items, 5, 6, k=3, cache_dir=str(tmp_path))) == fresh
    assert len(calls) == 1  # the rewritten file is a hit


def test_user_graph_cache_key_covers_k_and_sizes(tmp_path):
    users, items = np.array(TRAIN).T
    for k, n_users, n_items in [(2, 5, 6), (3, 5, 6), (2, 6, 6), (2, 5, 7)]:
        graph = user_user_graph(users, items, n_users, n_items, k=k, cache_dir=str(tmp_path))
        assert graph.n_users == n_users and graph.k == k
    assert len(list(tmp_path.glob("user_graph_*.npz"))) == 4


def _knn_graph_full_masks(features, k, chunk_size):
    """The kNN graph as built before the memory fix: one full tie-breaking mask per chunk."""
    n = features.shape[0]
    k = min(k, n)
    normed = F.normalize(features.float(), dim=1)
    rows, cols = [], []
    for start in range(0, n, chunk_size):
        scores = normed[start:start + chunk_size] @ normed.T
        kth = torch.topk(scores, k, dim=1).values[:, -1:]
        tied = scores == kth
        mask = (scores > kth) | (tied & (torch.cumsum(tied, dim=1) <= k - (scores > kth).sum(1, keepdim=True)))
        r, c = mask.nonzero(as_tuple=True)
        rows.append(r + start)
        cols.append(c)
    index = torch.stack([torch.cat(rows), torch.cat(cols)])
    return torch.sparse_coo_tensor(index, torch.full((index.shape[1],), 1.0 / k), (n, n)).coalesce()


def _tie_heavy_features(n=300, d=8, seed=3):
    """Random rows with exact duplicates (boundary ties), zero rows (all tied) and one NaN row."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, d, generator=g)
    feats[10:40] = feats[5]  # 31 identical rows: every one's top-k boundary is a tie
    feats[100:103] = 0
    feats[200] = feats[201] * 2.0  # same direction: equal cosine up to rounding
    return feats


@pytest.mark.parametrize("k,chunk", [(1, 7), (5, 64), (12, 1024), (300, 50)])
def test_knn_graph_is_bit_identical_to_the_full_mask_computation(k, chunk):
    feats = _tie_heavy_features()
    new, old = knn_graph(feats, k, chunk_size=chunk), _knn_graph_full_masks(feats, k, chunk)
    assert torch.equal(new.indices(), old.indices()) and torch.equal(new.values(), old.values())
    assert new.indices().shape[1] == 300 * min(k, 300)
    # rows 10..39 are 31 copies: with k=5 each keeps the 5 smallest ids among the copies
    if k == 5:
        assert new.to_dense()[20].nonzero().flatten().tolist() == [5, 10, 11, 12, 13]


def test_knn_graph_nan_rows_match_the_full_mask_computation():
    feats = _tie_heavy_features()
    feats[50, 2] = float("nan")  # its similarities are all NaN; other rows see one NaN column
    new, old = knn_graph(feats, 4, chunk_size=32), _knn_graph_full_masks(feats, 4, 32)
    assert torch.equal(new.indices(), old.indices()) and torch.equal(new.values(), old.values())


def test_chunk_topk_holds_no_int64_copy_of_the_chunk():
    """The regular path allocates one bool per score (the old mask took ~17 bytes per score)."""
    from benchmarks.memory import peak_rss

    scores = torch.randn(512, 40000, generator=torch.Generator().manual_seed(0))  # 78 MiB of float32
    with peak_rss() as mem:
        rows, cols = graphs._chunk_topk(scores, 10)
    assert rows.shape == (5120,) and torch.equal(cols.view(512, 10), cols.view(512, 10).sort(1).values)
    torch.testing.assert_close(scores.gather(1, cols.view(512, 10)).sort(1).values,
                               scores.topk(10, dim=1).values.sort(1).values)
    assert mem["added_mib"] < 45, mem  # the bool mask is 19.5 MiB; an int64 copy would be 156 MiB


def test_cache_key_tracks_this_module_source():
    import hashlib
    import inspect

    source = inspect.getsource(graphs).encode()
    assert graphs._ITEM_GRAPH_VERSION.endswith(hashlib.sha1(source).hexdigest()[:16])
    assert graphs._USER_GRAPH_VERSION.endswith(hashlib.sha1(source).hexdigest()[:16])
