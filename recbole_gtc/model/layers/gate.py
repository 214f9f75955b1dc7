"""The similarity gate that mixes content views into the item ID view (docs/method.md, step 7).

With views ``x_0 = e`` (ID) and ``x_1..x_M`` (denoised content), each item gets
softmax weights over the M + 1 views from dot-product similarities, and
``e' = e + sum_k w_k x_k``.

* M = 2 keeps the released code's pairing: ``s = [<e,v>, <e,t>, <v,t>]``, so the
  weight of ``e`` comes from sim(e, v), of ``v`` from sim(e, t) and of ``t`` from sim(v, t).
* Any other M uses the natural extension: view k's score is its mean similarity to
  the other views. It is symmetric in the modalities, and when all views coincide
  it gives equal weights, exactly like the M = 2 rule does.
"""

import torch


def gate_scores(views):
    """Per-item gate scores before the softmax.

    Args:
        views (list of Tensor): ``[e, x_1, ..., x_M]``, each ``(n, d)``.

    Returns:
        Tensor: ``(n, M + 1)``; column k scores view k.
    """
    if len(views) == 3:
        e, v, t = views
        return torch.stack([(e * v).sum(-1), (e * t).sum(-1), (v * t).sum(-1)], dim=-1)
    stacked = torch.stack(views, dim=1)  # (n, V, d)
    sims = stacked @ stacked.transpose(1, 2)  # (n, V, V)
    n_views = len(views)
    off_diagonal = sims.sum(-1) - sims.diagonal(dim1=1, dim2=2)
    return off_diagonal / max(n_views - 1, 1)


def similarity_gate(views, temperature=1.0):
    """``e' = e + sum_k softmax(scores / temperature)_k * x_k``.

    Args:
        views (list of Tensor): ``[e, x_1, ..., x_M]``, each ``(n, d)``.
        temperature (float): softmax temperature tau.

    Returns:
        Tensor: the gated ID view ``e'``, ``(n, d)``.
    """
    weights = torch.softmax(gate_scores(views) / temperature, dim=-1)  # (n, V)
    mixed = (torch.stack(views, dim=1) * weights.unsqueeze(-1)).sum(1)
    return views[0] + mixed
