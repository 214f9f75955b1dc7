"""The two homogeneous graphs of GTC (docs/method.md, "Homogeneous graphs"), built from TRAINING data and features only.

* Item-item graph ``S = sum_m w_m S_m``: per modality a cosine top-k graph whose kept
  edges weigh ``1/k`` (``D^-1/2 A D^-1/2`` with every row sum equal to k, as in
  LATTICE/DRAGON). Built in row chunks, never a dense ``I x I`` matrix.
* User-user graph: co-interaction counts ``C = R R^T`` of the binary training matrix
  (scipy sparse, diagonal removed); each user keeps its top-k co-interacting users.
  :meth:`UserGraph.sample` pads short neighbour lists once per epoch, as DRAGON does.

Both graphs can be cached on disk under a sha1 of everything that changes them. A cache
file also stores a sha1 of its own arrays; one that cannot be read, fails that check or
does not fit the graph (a truncated or corrupt file) is never trusted: it is rebuilt and
atomically rewritten.
"""

import hashlib
import logging
import os

import numpy as np
import torch
import torch.nn.functional as F

from recbole_gtc.model.layers.bipartite import binary_matrix
from recbole_gtc.utils.files import atomic_save, atomic_write


def _source_digest():
    # Cache keys include this module's own source: a cache written by code that built the
    # graphs differently (another tie rule, another normalisation) can never be read back.
    with open(os.path.abspath(__file__), "rb") as handle:
        return hashlib.sha1(handle.read()).hexdigest()[:16]


_ITEM_GRAPH_VERSION = f"item-graph-v2-{_source_digest()}"  # v2: the file carries a checksum of its arrays
_USER_GRAPH_VERSION = f"user-graph-v2-{_source_digest()}"


def _arrays_sha1(*arrays):
    """sha1 of the arrays' dtypes, shapes and bytes (numpy or CPU tensors)."""
    digest = hashlib.sha1()
    for array in arrays:
        array = np.ascontiguousarray(array.numpy() if isinstance(array, torch.Tensor) else array)
        digest.update(repr((str(array.dtype), array.shape)).encode())
        digest.update(array.data)
    return digest.hexdigest()


def _distrust(path, reason):
    logging.getLogger(__name__).warning(f"{path}: cached graph not used ({reason}); rebuilding it")


def _topk_mask(scores, k):
    """Boolean ``(c, n)`` mask of each row's k largest scores; ties go to the smaller column.

    ``torch.topk`` does not specify which of several equal values it returns, so
    only its k-th value is used: everything strictly above it is kept, and the
    remaining slots go to the columns equal to it, leftmost first.
    """
    kth = torch.topk(scores, k, dim=1).values[:, -1:]
    above = scores > kth
    tied = scores == kth
    free = k - above.sum(dim=1, keepdim=True)
    return above | (tied & (torch.cumsum(tied, dim=1) <= free))


def _chunk_topk(scores, k):
    """Row and column ids of each row's k largest scores, ties to the smaller column.

    The same selection as :func:`_topk_mask`, in the same row-major order, with less
    memory: a row whose (k+1)-th largest score is below its k-th (no tie at the boundary:
    almost every row) keeps exactly its scores ``>=`` the k-th, read off one boolean
    ``(c, n)`` mask; only the other rows (boundary ties, and rows holding a NaN, which
    ``torch.topk`` ranks first) go through :func:`_topk_mask`, whose masks and int64
    running count cost about 17 bytes per score instead of 1.

    Args:
        scores (Tensor): ``(c, n)`` float.
        k (int): ``1 <= k <= n``.

    Returns:
        (LongTensor, LongTensor): row and column ids, ``(c * k,)`` each for finite scores.
    """
    top = torch.topk(scores, min(k + 1, scores.shape[1]), dim=1).values  # (c, k or k+1), descending
    kth = top[:, k - 1:k]
    keep = scores >= kth  # everything above the k-th value and every tie with it
    regular = ~torch.isnan(top[:, 0])
    if top.shape[1] > k:
        regular &= top[:, k] < top[:, k - 1]
    irregular = (~regular).nonzero().flatten()
    if irregular.numel():
        keep[irregular] = _topk_mask(scores[irregular], k)
    return keep.nonzero(as_tuple=True)


def knn_graph(features, k, chunk_size=1024):
    """Cosine top-k graph with edge weight ``1/k``.

    Row i keeps the k items most cosine-similar to item i (itself usually among
    them). A zero feature row has similarity 0 to everything, so it keeps the k
    smallest ids instead of producing NaN. ``k`` larger than n is clamped to n.

    Args:
        features (Tensor): ``(n, D)``.
        k (int): neighbours per row.
        chunk_size (int): rows of similarities held at once (memory ``O(chunk_size * n)``).

    Returns:
        Tensor: sparse COO ``(n, n)``, coalesced, float32, exactly ``min(k, n)`` entries per row.
    """
    n = features.shape[0]
    k = min(int(k), n)
    if k < 1:
        raise ValueError(f"knn_graph needs k >= 1 and at least one row, got k={k}, n={n}")
    normed = F.normalize(features.detach().float(), dim=1)
    rows, cols = [], []
    for start in range(0, n, chunk_size):
        # One expression: the previous chunk's similarities are freed before the next is made.
        r, c = _chunk_topk(normed[start:start + chunk_size] @ normed.T, k)  # scores (c, n)
        rows.append(r + start)
        cols.append(c)
    index = torch.stack([torch.cat(rows), torch.cat(cols)])
    values = torch.full((index.shape[1],), 1.0 / k, dtype=torch.float32, device=index.device)
    return torch.sparse_coo_tensor(index, values, (n, n), check_invariants=True).coalesce()


def _item_graph_key(features, k, weights):
    digest = hashlib.sha1(_ITEM_GRAPH_VERSION.encode())
    digest.update(repr(int(k)).encode())
    for name in sorted(features):
        feat = features[name].detach().cpu().contiguous()
        digest.update(repr((name, tuple(feat.shape), str(feat.dtype), float(weights[name]))).encode())
        digest.update(feat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


def item_item_graph(features, k, weights, chunk_size=1024, cache_dir=None):
    """Weighted sum of per-modality kNN graphs, ``S = sum_m weights[m] * knn_graph(features[m], k)``.

    Args:
        features (dict): modality name -> ``(n, D_m)`` Tensor (same n for all).
        k (int): neighbours per item and modality.
        weights (dict): modality name -> float, one for every modality in ``features``.
        chunk_size (int): see :func:`knn_graph`.
        cache_dir (str, optional): folder of the on-disk cache; ``None`` disables it.
            The key hashes every modality's name, shape, dtype, raw feature bytes and
            weight, plus k and a format version.

    Returns:
        Tensor: sparse COO ``(n, n)``, coalesced, float32.
    """
    if not features:
        raise ValueError("item_item_graph needs at least one modality")
    missing = sorted(set(features) - set(weights))
    if missing:
        raise ValueError(f"item_item_graph: no weight for modalities {missing}")
    n = next(iter(features.values())).shape[0]
    path = None
    if cache_dir is not None:
        path = os.path.join(cache_dir, f"item_graph_{_item_graph_key(features, k, weights)}.pt")
        if os.path.exists(path):
            cached = _load_item_graph(path, n)
            if cached is not None:
                return cached

    graph = None
    for name in sorted(features):  # a fixed order makes the float sums reproducible
        term = knn_graph(features[name], k, chunk_size=chunk_size) * float(weights[name])
        graph = term if graph is None else graph + term
    graph = graph.coalesce()

    if path is not None:
        indices, values = graph.indices().cpu(), graph.values().cpu()
        record = {"indices": indices, "values": values, "sha1": _arrays_sha1(indices, values)}
        atomic_save(record, path)
    return graph


def _load_item_graph(path, n):
    """The cached ``(n, n)`` graph, or ``None`` when the file is unreadable, corrupt or does not fit."""
    try:
        cached = torch.load(path, weights_only=True)
        indices, values = cached["indices"], cached["values"]
        if _arrays_sha1(indices, values) != cached["sha1"]:
            return _distrust(path, "checksum mismatch")
        if indices.dim() != 2 or indices.shape[0] != 2 or values.shape != (indices.shape[1],):
            return _distrust(path, "wrong shapes")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= n):
            return _distrust(path, "indices out of range")
        return torch.sparse_coo_tensor(indices, values, (n, n), check_invariants=True).coalesce()
    except Exception as err:  # any unreadable file (truncated zip, wrong pickle, ...) is rebuilt
        return _distrust(path, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")


def epoch_generator(seed, epoch_idx):
    """The CPU generator of a model's once-per-epoch graph re-draws (user-graph padding,
    FREEDOM's edge pruning): a function of (seed, epoch) only, so every model draws the same
    padding for the same seed and epoch, and a resumed run redraws what it would have drawn."""
    return torch.Generator().manual_seed(int(seed) * 100003 + int(epoch_idx))


class UserGraph:
    """Each user's kept co-interaction neighbours, in CSR form.

    Attributes:
        indptr (np.ndarray): ``(U + 1,)`` int64; user u's neighbours are ``indices[indptr[u]:indptr[u+1]]``.
        indices (np.ndarray): ``(nnz,)`` int64 neighbour ids, by decreasing count then increasing id.
        counts (np.ndarray): ``(nnz,)`` float32 co-interaction counts, aligned with ``indices``.
        k (int): neighbours per user after padding.
    """

    def __init__(self, indptr, indices, counts, k):
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.counts = np.asarray(counts, dtype=np.float32)
        self.k = int(k)
        self.n_users = len(self.indptr) - 1

    @property
    def neighbours(self):
        """``(indptr, indices, counts)``, the CSR arrays."""
        return self.indptr, self.indices, self.counts

    def sample(self, generator=None):
        """One epoch's fixed-width neighbour table, padded as DRAGON does.

        Users with k neighbours keep them. A user with ``1 <= m < k`` neighbours
        keeps its m and fills slots ``m..k-1`` one by one, slot j copying a uniformly
        drawn earlier slot ``0..j-1`` (DRAGON appends a random entry of the growing
        list), so every padded entry is one of the user's own neighbours, with its
        count. Weights are the softmax of the k slot counts. Users with no
        neighbours get index 0 and weight 0 (they receive no message).

        Args:
            generator (torch.Generator, optional): CPU generator for the padding draws.

        Returns:
            (LongTensor, FloatTensor): index ``(U, k)`` and weight ``(U, k)``, on CPU.
        """
        n_users, k = self.n_users, self.k
        if self.indices.size == 0:
            return torch.zeros(n_users, k, dtype=torch.long), torch.zeros(n_users, k)
        degree = torch.from_numpy(np.diff(self.indptr))  # (U,)
        slot = torch.arange(k)
        draw = torch.rand(n_users, k, generator=generator, dtype=torch.float64)
        # Slot j < degree holds the user's j-th neighbour; slot j >= degree points at a random earlier slot.
        source = torch.where(
            slot < degree.unsqueeze(1),
            slot.expand(n_users, k),
            torch.minimum((draw * slot).long(), (slot - 1).clamp(min=0)),
        )
        # Resolve chains left to right: an earlier slot's source is final before a later slot reads it.
        for j in range(1, k):
            source[:, j] = source.gather(1, source[:, j:j + 1]).squeeze(1)

        has_any = degree > 0
        flat = torch.from_numpy(self.indptr[:-1]).unsqueeze(1) + source  # positions in indices/counts
        flat = torch.where(has_any.unsqueeze(1), flat, torch.zeros_like(flat))  # keeps the gather in range
        index = torch.from_numpy(self.indices)[flat]
        weight = torch.softmax(torch.from_numpy(self.counts)[flat], dim=1)
        index = torch.where(has_any.unsqueeze(1), index, torch.zeros_like(index))
        weight = torch.where(has_any.unsqueeze(1), weight, torch.zeros_like(weight))
        return index, weight


def _top_neighbours(r, k):
    """CSR arrays of each user's top-k co-interacting users by count, ties to the smaller id."""
    c = (r @ r.T).tocoo()
    off_diagonal = c.row != c.col
    row, col, count = c.row[off_diagonal], c.col[off_diagonal], c.data[off_diagonal]
    order = np.lexsort((col, -count, row))
    row, col, count = row[order], col[order], count[order]
    n_users = r.shape[0]
    starts = np.searchsorted(row, np.arange(n_users))
    rank = np.arange(len(row)) - starts[row]
    keep = rank < k
    row, col, count = row[keep], col[keep], count[keep]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=n_users), out=indptr[1:])
    return indptr, col.astype(np.int64), count.astype(np.float32)


def user_user_graph(users, items, n_users, n_items, k=40, cache_dir=None):
    """Top-k co-interaction graph of users from the given (TRAINING) interactions.

    Args:
        users, items (array-like or Tensor of int): ``(nnz,)`` interactions, ids in
            ``[0, n_users)`` / ``[0, n_items)``; duplicates count once.
        n_users, n_items (int): id ranges.
        k (int): neighbours kept per user.
        cache_dir (str, optional): folder of the on-disk cache; ``None`` disables it.
            The key hashes the binary interaction matrix, n_users, n_items, k and a
            format version.

    Returns:
        UserGraph
    """
    r = binary_matrix(users, items, n_users, n_items)
    path = None
    if cache_dir is not None:
        digest = hashlib.sha1(repr((_USER_GRAPH_VERSION, int(n_users), int(n_items), int(k))).encode())
        digest.update(r.indptr.astype(np.int64).data)
        digest.update(r.indices.astype(np.int64).data)
        path = os.path.join(cache_dir, f"user_graph_{digest.hexdigest()}.npz")
        if os.path.exists(path):
            cached = _load_user_graph(path, n_users, k)
            if cached is not None:
                return cached

    indptr, indices, counts = _top_neighbours(r, k)
    if path is not None:
        sha1 = np.array(_arrays_sha1(indptr, indices, counts))

        def write(tmp):
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
                np.savez(f, indptr=indptr, indices=indices, counts=counts, sha1=sha1)

        atomic_write(path, write)
    return UserGraph(indptr, indices, counts, k)


def _load_user_graph(path, n_users, k):
    """The cached graph, or ``None`` when the file is unreadable, corrupt or does not fit."""
    try:
        with np.load(path, allow_pickle=False) as cached:
            indptr, indices, counts = cached["indptr"], cached["indices"], cached["counts"]
            sha1 = str(cached["sha1"])
        if _arrays_sha1(indptr, indices, counts) != sha1:
            return _distrust(path, "checksum mismatch")
        ok = (
            indptr.shape == (n_users + 1,) and indptr[0] == 0 and np.all(np.diff(indptr) >= 0)
            and indptr[-1] == len(indices) == len(counts)
            and (indices.size == 0 or (indices.min() >= 0 and indices.max() < n_users))
        )
        if not ok:
            return _distrust(path, "does not fit the training data")
        return UserGraph(indptr, indices, counts, k)
    except Exception as err:  # any unreadable file (truncated zip, missing array, ...) is rebuilt
        return _distrust(path, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
