"""DRAGON against its released formulas: the item-graph weights, the exact relation to GTC's backbone,
the whole forward pass and loss written densely. What every multi-modal model keeps (shapes,
gradients, evaluation, seeds, leakage, refusals, learning) is tests/test_mm_models.py's."""

import dense
import numpy as np
import torch
from toydata import N_ITEMS, N_USERS, build, features, toy_model

SMALL = {"train_batch_size": 64, "user_graph_k": 5, "knn_k": 4}


def _build(tmp_path, model="DRAGON", **overrides):
    return toy_model(tmp_path, model, **dict(SMALL, **overrides))


def test_item_graph_weights_follow_mm_image_weight(tmp_path):
    model, _ = _build(tmp_path, mm_image_weight=0.25)
    assert model.modality_weights(0.25) == {"image": 0.25, "text": 0.75}
    rows = torch.sparse.sum(model.item_graph, dim=1).to_dense()
    assert rows[0] == 0  # padding item: no edges
    assert torch.allclose(rows[1:], torch.ones(N_ITEMS))  # each modality's rows sum to 1, weights sum to 1


def _linear_equivalent_mlp(mlp, linear, shift=10.0):
    """Set ``mlp`` (Linear D->4d, LeakyReLU, Linear 4d->d) to compute exactly ``linear`` (D->d)
    on inputs with entries > -shift: the first layer copies x + shift (positive, so LeakyReLU is
    the identity), the second applies the linear map and subtracts the shift's image."""
    first, second = mlp[0], mlp[2]
    d_in = first.in_features
    with torch.no_grad():
        first.weight.zero_()
        first.weight[:d_in] = torch.eye(d_in)
        first.bias.fill_(shift)
        second.weight.zero_()
        second.weight[:, :d_in] = linear.weight
        second.bias.copy_(linear.bias - shift * linear.weight.sum(1))


def test_gtc_without_diffusion_tc_gate_and_id_view_computes_dragon(tmp_path):
    """GTC(use_diffusion=False, use_tc=False, use_gate=False) is DRAGON plus an ID view and with a
    one-layer projection. With the ID view zeroed and DRAGON's MLP set to the same linear map,
    both give the same scores and the same BPR loss on the same batch (same padding draws)."""
    common = dict(SMALL, reg_weight=0.0, n_mm_layers=1)
    gtc, train = _build(tmp_path, "GTC", use_diffusion=False, use_tc=False, use_gate=False,
                        mm_graph_weights={"image": 0.1, "text": 0.9}, **common)
    gtc = gtc.double()
    dragon = build(tmp_path, "mm", "DRAGON", seed=1, mm_image_weight=0.1, **common)[0].double()

    with torch.no_grad():
        gtc.item_id_embedding.weight.zero_()
        gtc.user_preference["id"].zero_()
        for m in dragon.modalities:
            dragon.user_preference[m].copy_(gtc.user_preference[m])
            _linear_equivalent_mlp(dragon.projections[m], gtc.projections[m])
        dragon.user_view_weight.copy_(gtc.user_view_weight[:, 1:])
    assert torch.equal(gtc.item_graph.to_dense(), dragon.item_graph.to_dense().double())
    for epoch in (0, 3):  # the per-epoch padding of the user graph is the same draw
        gtc.on_epoch_start(epoch)
        dragon.on_epoch_start(epoch)
        assert torch.equal(gtc.user_nb_index, dragon.user_nb_index)

    gtc.eval()
    dragon.eval()
    users = {"user_id": torch.arange(1, N_USERS + 1)}
    assert torch.allclose(gtc.full_sort_predict(users), dragon.full_sort_predict(users), atol=1e-10)
    gtc.train()
    dragon.train()
    batch = next(iter(train))
    assert torch.allclose(gtc.calculate_loss(batch), dragon.calculate_loss(batch), atol=1e-10)
    # The ID view is what separates them: give it back its values and the scores move.
    with torch.no_grad():
        gtc.item_id_embedding.weight.normal_()
        gtc.user_preference["id"].normal_()
    gtc.eval()
    dragon.eval()
    assert not torch.allclose(gtc.full_sort_predict(users), dragon.full_sort_predict(users), atol=1e-3)


def test_forward_and_loss_match_the_released_formulas(tmp_path):
    """Scores and loss equal MMRec's DRAGON written out densely in numpy on the toy split:
    per modality x_m = rownorm([P_m ; W2 lrelu(W1 X_m + b1) + b2]), R_m = x + A x + A^2 x over the
    symmetric-normalised training graph; items [R_1 ; R_2] + S [R_1 ; R_2] (S = 0.1 kNN(image) +
    0.9 kNN(text), entries 1/k); users [w_u1 R_1 ; w_u2 R_2] plus the softmax(count)-weighted sum
    over their top-k co-interaction neighbours (count descending, then id); loss
    -mean log2 sigmoid(y_ui - y_uj) + reg_weight (sum_m mean(P_m[u]^2) + mean(w^2))."""
    model, train = _build(tmp_path, reg_weight=0.5, n_layers=2, n_mm_layers=1, mm_image_weight=0.1)
    model = model.double()
    ds = train.dataset
    raw = features(("image", "text"))

    def lrelu(z):
        return np.where(z > 0, z, 0.01 * z)

    content = []
    for m in ("image", "text"):
        (w1, b1), (w2, b2) = ((lin.weight.detach().numpy(), lin.bias.detach().numpy())
                              for lin in (model.projections[m][0], model.projections[m][2]))
        content.append(lrelu(dense.item_features(ds, raw[m]) @ w1.T + b1) @ w2.T + b2)
    users, items = dense.dragon_backbone(model, ds, raw, content, {"image": 0.1, "text": 0.9})
    w = model.user_view_weight.detach().numpy()

    got_u, got_i = model.forward()
    # atol: the graphs and neighbour weights are built in float32
    assert np.allclose(got_u.detach().numpy()[1:], users[1:], atol=1e-6)
    assert np.allclose(got_i.detach().numpy()[1:], items[1:], atol=1e-6)

    batch = next(iter(train))
    u, p, n = (batch[f].numpy() for f in ("user_id", "item_id", "neg_item_id"))
    diff = (users[u] * items[p]).sum(1) - (users[u] * items[n]).sum(1)
    expected = -np.mean(np.log2(1 / (1 + np.exp(-diff))))
    expected += 0.5 * (sum((model.user_preference[m].detach().numpy()[u] ** 2).mean() for m in ("image", "text"))
                       + (w ** 2).mean())
    assert np.isclose(model.calculate_loss(batch).item(), expected, atol=1e-6)
