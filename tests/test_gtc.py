"""The GTC model: wiring, gradients, deterministic evaluation, ablations, any number of modalities."""

import math

import numpy as np
import pytest
import torch

from recbole_gtc.data import create_dataset, data_preparation
from recbole_gtc.model.gtc import GTC
from recbole_gtc.utils import RecboleGTCError
from toydata import config_for, random_splits, write_dataset

N_USERS, N_ITEMS = 40, 30


def _features(names, seed=0):
    rng = np.random.default_rng(seed)
    return {m: rng.normal(size=(N_ITEMS, 5 + i)).astype(np.float32) for i, m in enumerate(names)}


def _build(tmp_path, modalities=("image", "text"), **overrides):
    write_dataset(tmp_path, "mm", random_splits(N_USERS, N_ITEMS), _features(modalities), N_ITEMS)
    overrides.setdefault("train_batch_size", 64)
    overrides.setdefault("user_graph_k", 5)
    overrides.setdefault("knn_k", 4)
    config = config_for(tmp_path, "mm", model="GTC", **overrides)
    torch.manual_seed(0)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    torch.manual_seed(0)
    return GTC(config, train.dataset), train, valid


def _batch(train):
    return next(iter(train))


def test_every_parameter_receives_gradient(tmp_path):
    model, train, _ = _build(tmp_path)
    model.train()
    model.calculate_loss(_batch(train)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_denoiser_condition_is_not_detached(tmp_path):
    """The diffusion loss alone must train the item ID embedding (the denoiser's condition)."""
    model, _, _ = _build(tmp_path)
    model.train()
    model.forward()["diff_loss"].backward()
    assert model.item_id_embedding.weight.grad[1:].abs().sum() > 0


def test_bpr_term_is_log2_and_stable(tmp_path):
    model, train, _ = _build(tmp_path, use_tc=False, use_diffusion=False, reg_weight=0.0)
    model.train()
    batch = _batch(train)
    out = model.forward()
    u = out["user"][batch["user_id"]]
    diff = (u * out["item"][batch["item_id"]]).sum(-1) - (u * out["item"][batch["neg_item_id"]]).sum(-1)
    expected = -torch.log2(torch.sigmoid(diff.double())).mean()
    assert torch.allclose(model.calculate_loss(batch).double(), expected, rtol=1e-5)


def test_full_sort_is_deterministic_and_never_stale(tmp_path):
    model, train, valid = _build(tmp_path)
    users = {"user_id": torch.arange(1, N_USERS + 1)}
    model.eval()
    first = model.full_sort_predict(users)
    model.train()
    model.eval()  # recomputed from scratch: same parameters, fixed timestep and noise
    assert torch.equal(first, model.full_sort_predict(users))

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.calculate_loss(_batch(train)).backward()
    optimizer.step()
    model.eval()
    assert not torch.allclose(first, model.full_sort_predict(users))  # reflects the new parameters


def test_prediction_matches_full_sort(tmp_path):
    model, _, _ = _build(tmp_path)
    model.eval()
    users = torch.tensor([1, 2, 3])
    items = torch.tensor([4, 5, 6])
    pointwise = model.predict({"user_id": users, "item_id": items})
    full = model.full_sort_predict({"user_id": users})
    assert torch.allclose(pointwise, full[torch.arange(3), items], atol=1e-5)


@pytest.mark.parametrize("modalities", [("image",), ("image", "text"), ("image", "text", "audio")])
def test_any_number_of_modalities(tmp_path, modalities):
    model, train, _ = _build(tmp_path, modalities=modalities)
    model.train()
    loss = model.calculate_loss(_batch(train))
    assert torch.isfinite(loss)
    assert model.forward()["item"].shape == (N_ITEMS + 1, 64 * (len(modalities) + 1))


@pytest.mark.parametrize(
    "switch, untouched",
    [
        ({"use_diffusion": False}, "denoisers"),
        ({"use_tc": False}, "logit_scale"),
        ({"tc_mode": "pairwise"}, None),
        ({"tc_scope": "batch"}, None),
        ({"use_gate": False}, None),
    ],
)
def test_ablations_train_on_the_same_code_path(tmp_path, switch, untouched):
    model, train, _ = _build(tmp_path, **switch)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    batch = _batch(train)
    for _ in range(3):
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    if untouched:
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(untouched)]
        assert all(g is None or g.abs().sum() == 0 for g in grads)


def test_gate_switch_changes_the_id_view(tmp_path):
    on, _, _ = _build(tmp_path / "on")
    off, _, _ = _build(tmp_path / "off", use_gate=False)
    off.load_state_dict(on.state_dict())
    on.eval()
    off.eval()
    users = {"user_id": torch.arange(1, 5)}
    assert not torch.allclose(on.full_sort_predict(users), off.full_sort_predict(users))


def test_graphs_come_from_the_training_split(tmp_path):
    model, train, _ = _build(tmp_path)
    ds = train.dataset
    splits = random_splits(N_USERS, N_ITEMS)

    def internal(pairs):
        return {(int(ds.token2id("user_id", f"u{u}")), int(ds.token2id("item_id", str(i)))) for u, i in pairs}

    adj = model.norm_adj.to_sparse_coo().coalesce()
    edges = {(u, i - model.n_users) for u, i in adj.indices().T.tolist() if u < model.n_users}
    assert edges == internal(splits["train"])
    assert not edges & internal(splits["valid"] + splits["test"])
    indptr, indices, counts = model.user_graph.neighbours
    r = np.zeros((model.n_users, model.n_items))
    for u, i in internal(splits["train"]):
        r[u, i] = 1
    co = r @ r.T
    np.fill_diagonal(co, 0)
    for u in range(model.n_users):
        assert set(counts[indptr[u]:indptr[u + 1]].tolist()) <= set(co[u][co[u] > 0].tolist())
        assert indptr[u + 1] - indptr[u] == min(model.user_graph_k, int((co[u] > 0).sum()))


def test_bad_configs_fail_clearly(tmp_path):
    with pytest.raises(RecboleGTCError, match="tc_mode"):
        _build(tmp_path, tc_mode="triplet")
    write_dataset(tmp_path / "plain", "mm", random_splits(N_USERS, N_ITEMS), _features(["image"]), N_ITEMS)
    (tmp_path / "plain" / "mm" / "mm.yaml").write_text(
        "load_col:\n  inter: [user_id, item_id]\nbenchmark_filename: [train, valid, test]\n"
    )
    config = config_for(tmp_path / "plain", "mm", model="GTC")
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    with pytest.raises(RecboleGTCError, match="no 'modalities'"):
        GTC(config, train.dataset)
