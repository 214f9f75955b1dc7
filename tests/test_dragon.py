"""DRAGON: shapes, the exact relation to GTC's backbone, deterministic never-stale evaluation, learning."""

import numpy as np
import pytest
import torch
from recbole.utils import init_seed

from recbole_gtc.data import create_dataset, data_preparation
from recbole_gtc.model.dragon import DRAGON
from recbole_gtc.model.gtc import GTC
from recbole_gtc.utils import RecboleGTCError
import dense
from planted import planted_roots, recall, train
from toydata import config_for, random_splits, write_dataset

N_USERS, N_ITEMS = 40, 30
SMALL = {"train_batch_size": 64, "user_graph_k": 5, "knn_k": 4}


def _features(names, seed=0):
    rng = np.random.default_rng(seed)
    return {m: rng.normal(size=(N_ITEMS, 5 + i)).astype(np.float32) for i, m in enumerate(names)}


def _data(tmp_path, modalities=("image", "text"), model="DRAGON", **overrides):
    if not (tmp_path / "mm").exists():
        write_dataset(tmp_path, "mm", random_splits(N_USERS, N_ITEMS), _features(modalities), N_ITEMS)
    config = config_for(tmp_path, "mm", model=model, **dict(SMALL, **overrides))
    torch.manual_seed(0)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    return config, train


def _build(tmp_path, modalities=("image", "text"), **overrides):
    config, train = _data(tmp_path, modalities, **overrides)
    torch.manual_seed(0)
    return DRAGON(config, train.dataset), train


@pytest.mark.parametrize("modalities", [("image",), ("image", "text"), ("image", "text", "audio")])
def test_shapes_and_gradients_for_any_number_of_modalities(tmp_path, modalities):
    model, train = _build(tmp_path, modalities)
    users, items = model.forward()
    m = len(modalities)
    assert users.shape == (N_USERS + 1, 64 * m) and items.shape == (N_ITEMS + 1, 64 * m)
    model.train()
    model.calculate_loss(next(iter(train))).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


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
    common = dict(reg_weight=0.0, n_mm_layers=1)
    config, train = _data(tmp_path, model="GTC", use_diffusion=False, use_tc=False, use_gate=False,
                          mm_graph_weights={"image": 0.1, "text": 0.9}, **common)
    torch.manual_seed(0)
    gtc = GTC(config, train.dataset).double()
    dconfig, dtrain = _data(tmp_path, mm_image_weight=0.1, **common)
    torch.manual_seed(1)
    dragon = DRAGON(dconfig, dtrain.dataset).double()

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


def test_evaluation_is_deterministic_and_never_stale(tmp_path):
    model, train = _build(tmp_path)
    users = {"user_id": torch.arange(1, N_USERS + 1)}
    model.eval()
    first = model.full_sort_predict(users)
    model.train()
    model.eval()
    assert torch.equal(first, model.full_sort_predict(users))
    pointwise = model.predict({"user_id": torch.tensor([1, 2]), "item_id": torch.tensor([3, 4])})
    assert torch.allclose(pointwise, first[[0, 1], [3, 4]], atol=1e-5)

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.calculate_loss(next(iter(train))).backward()
    optimizer.step()
    model.eval()
    assert not torch.allclose(first, model.full_sort_predict(users))
    model.load_state_dict(model.state_dict())
    assert model._eval_cache is None


def test_same_seed_same_training(tmp_path):
    def run():
        init_seed(999, True)  # data order and negative sampling follow numpy/random/torch seeds
        model, train = _build(tmp_path)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for epoch in range(2):
            model.on_epoch_start(epoch)
            for batch in train:
                optimizer.zero_grad()
                model.calculate_loss(batch).backward()
                optimizer.step()
        model.eval()
        return model.full_sort_predict({"user_id": torch.arange(1, N_USERS + 1)})

    assert torch.equal(run(), run())


def test_graphs_come_from_the_training_split(tmp_path):
    model, train = _build(tmp_path)
    ds = train.dataset
    splits = random_splits(N_USERS, N_ITEMS)
    train_edges = {(int(ds.token2id("user_id", f"u{u}")), int(ds.token2id("item_id", str(i))))
                   for u, i in splits["train"]}
    adj = model.norm_adj.to_sparse_coo().coalesce()
    edges = {(u, i - model.n_users) for u, i in adj.indices().T.tolist() if u < model.n_users}
    assert edges == train_edges


def test_dataset_without_modalities_fails_clearly(tmp_path):
    write_dataset(tmp_path / "plain", "mm", random_splits(N_USERS, N_ITEMS), _features(["image"]), N_ITEMS)
    (tmp_path / "plain" / "mm" / "mm.yaml").write_text(
        "load_col:\n  inter: [user_id, item_id]\nbenchmark_filename: [train, valid, test]\n"
    )
    config = config_for(tmp_path / "plain", "mm", model="DRAGON")
    train, _, _ = data_preparation(config, create_dataset(config))
    with pytest.raises(RecboleGTCError, match="no 'modalities'"):
        DRAGON(config, train.dataset)


def test_content_helps_on_planted_data(tmp_path, tmp_path_factory):
    """Same interactions, same seed: real features beat features permuted across items, and the
    ID-only BPR and popularity baselines."""
    roots = planted_roots(tmp_path_factory)
    real = recall(train("DRAGON", roots["real"], tmp_path))
    permuted = recall(train("DRAGON", roots["permuted"], tmp_path))
    bpr = recall(train("BPR", roots["real"], tmp_path))
    pop = recall(train("Pop", roots["real"], tmp_path))
    assert real > permuted + 0.03 and real > bpr + 0.03 and real > pop + 0.1, (real, permuted, bpr, pop)


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
    raw = _features(("image", "text"))

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
