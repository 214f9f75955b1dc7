"""GTC against its method: the denoiser's condition, BPR in base 2, the ablations on one code path,
the gate switch, one training step written densely. What every multi-modal model keeps (shapes,
gradients, evaluation, seeds, leakage, refusals, learning) is tests/test_mm_models.py's."""

import math

import dense
import pytest
import torch
from toydata import features, toy_model


def _build(tmp_path, **overrides):
    return toy_model(tmp_path, "GTC", **dict({"train_batch_size": 64, "user_graph_k": 5, "knn_k": 4}, **overrides))


def _batch(train):
    return next(iter(train))


def test_denoiser_condition_is_not_detached(tmp_path):
    """The diffusion loss alone must train the item ID embedding (the denoiser's condition)."""
    model, _ = _build(tmp_path)
    model.train()
    model.forward()["diff_loss"].backward()
    assert model.item_id_embedding.weight.grad[1:].abs().sum() > 0


def test_bpr_term_is_log2_and_stable(tmp_path):
    model, train = _build(tmp_path, use_tc=False, use_diffusion=False, reg_weight=0.0)
    model.train()
    batch = _batch(train)
    out = model.forward()
    u = out["user"][batch["user_id"]]
    diff = (u * out["item"][batch["item_id"]]).sum(-1) - (u * out["item"][batch["neg_item_id"]]).sum(-1)
    expected = -torch.log2(torch.sigmoid(diff.double())).mean()
    assert torch.allclose(model.calculate_loss(batch).double(), expected, rtol=1e-5)


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
    model, train = _build(tmp_path, **switch)
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
    on, _ = _build(tmp_path / "on")
    off, _ = _build(tmp_path / "off", use_gate=False)
    off.load_state_dict(on.state_dict())
    on.eval()
    off.eval()
    users = {"user_id": torch.arange(1, 5)}
    assert not torch.allclose(on.full_sort_predict(users), off.full_sort_predict(users))


# ---------------------------------------------------------------- the whole method, densely
def _linear(layer, x):
    return x @ layer.weight.T + layer.bias


def _double_linear(block, x):
    """``DL(a->b)(x) = ReLU(Lin(ReLU(Lin(x))))`` (docs/method.md, step 5)."""
    first, second = block.net[0], block.net[2]
    return torch.relu(_linear(second, torch.relu(_linear(first, x))))


def _dense_denoiser(net, x_t, t, cond):
    """The conditional noise predictor written out from its layers (docs/method.md, step 5)."""
    d = cond.shape[1]
    freqs = 10000.0 ** (-2.0 * torch.arange(d, dtype=torch.float64) / (2 * d))  # width 2d: d sines, d cosines
    angles = t.double()[:, None] * freqs
    h = torch.cat([x_t, cond], 1) + torch.cat([torch.sin(angles), torch.cos(angles)], 1)
    x1 = _double_linear(net.down1, h)
    x2 = _double_linear(net.down2, x1)
    x3 = _double_linear(net.down3, x2)
    b = _double_linear(net.bottleneck[1], _double_linear(net.bottleneck[0], x3))
    u1 = _double_linear(net.up1, torch.cat([x2, _linear(net.skip_proj2, b)], 1))
    u2 = _double_linear(net.up2, torch.cat([x1, _linear(net.skip_proj1, u1)], 1))
    return _linear(net.out, u2)


def _dense_gtc(model, ds, raw, batch, seed):
    """GTC's training step on the toy split in dense float64 torch (docs/method.md, steps 1-11
    and "Losses"), with the random draws the model makes, in its order, from the same seed:
    one timestep per item, the noise of each modality, then one permutation per anchor view
    and other view for the Symile loss.

    Returns:
        (Tensor, Tensor, Tensor): users ``(U, 3d)``, items ``(I, 3d)`` and the scalar loss.
    """
    n_i, d = model.n_items, model.embedding_size
    mods = ("image", "text")
    torch.manual_seed(seed)
    t = torch.randint(1, model.noise_steps, (n_i,))
    eps = {m: torch.randn(n_i, d, dtype=torch.float64) for m in mods}

    # steps 1-6: projections, noising, denoising, one-step estimates, diffusion MSE (real items)
    abar = torch.cumprod(1 - torch.linspace(model.beta_start, model.beta_end, model.noise_steps,
                                            dtype=torch.float64), 0)[t][:, None]
    e = model.item_id_embedding.weight
    content, mse = {}, 0.0
    for m in mods:
        x = torch.from_numpy(dense.item_features(ds, raw[m]))
        x_t = abar.sqrt() * _linear(model.projections[m], x) + (1 - abar).sqrt() * eps[m]
        eps_hat = _dense_denoiser(model.denoisers[m], x_t, t, e)
        content[m] = (x_t - (1 - abar).sqrt() * eps_hat) / abar.sqrt()
        mse = mse + ((eps_hat[1:] - eps[m][1:]) ** 2).mean()
    g1, g2 = content["image"], content["text"]
    # step 7: the released gate pairing, e' = e + w_1 e + w_2 G_1 + w_3 G_2
    scores = torch.stack([(e * g1).sum(1), (e * g2).sum(1), (g1 * g2).sum(1)], 1)
    w = torch.softmax(scores / model.gate_temperature, 1)
    e_gated = e + w[:, :1] * e + w[:, 1:2] * g1 + w[:, 2:] * g2
    # steps 8-10: DRAGON's graphs and fusion over the views [e', G_1, G_2]
    users, items = (torch.from_numpy(h) for h in dense.dragon_backbone(
        model, ds, raw, [v.numpy() for v in (e_gated, g1, g2)], {"image": 0.1, "text": 0.9}))

    # losses: BPR in base 2, the regulariser, Symile over [E, G_1, G_2] of the real items, diffusion
    u, p, n = batch["user_id"], batch["item_id"], batch["neg_item_id"]
    diff = (users[u] * items[p]).sum(1) - (users[u] * items[n]).sum(1)
    bpr = -torch.log2(torch.sigmoid(diff)).mean()
    reg = sum((model.user_preference[v][u] ** 2).mean() for v in ("id",) + mods) + (model.user_view_weight ** 2).mean()
    views = [v[1:] / v[1:].norm(dim=1, keepdim=True) for v in (e, g1, g2)]
    perms = [[torch.randperm(n_i - 1) for _ in range(2)] for _ in range(3)]  # per anchor, per other view
    tc = dense.symile(views, model.logit_scale.exp(), perms)
    loss = bpr + model.reg_weight * reg + model.tc_weight * tc + model.diff_weight * mse
    return users, items, loss


def test_forward_and_loss_match_the_method_written_densely(tmp_path):
    """One training step (diffusion filter, gate, DRAGON's graphs and fusion, BPR, regulariser,
    Symile TC over all items, diffusion MSE) equals :func:`_dense_gtc` from the same draws."""
    model, train = _build(tmp_path, reg_weight=0.5)
    model = model.double().train()
    batch = _batch(train)
    raw = features(("image", "text"))
    with torch.no_grad():
        users, items, loss = _dense_gtc(model, train.dataset, raw, batch, seed=5)
        torch.manual_seed(5)
        out = model.forward()
    # The graphs, the schedule and the propagated views are float32 (the rest float64), so the
    # two sides agree to float32 rounding, which differs between CPUs' kernels (AVX2, AVX-512);
    # a wrong term of the method moves the loss by orders of magnitude more than rtol.
    torch.testing.assert_close(out["user"][1:], users[1:], rtol=0, atol=1e-6)
    torch.testing.assert_close(out["item"][1:], items[1:], rtol=0, atol=1e-6)
    torch.manual_seed(5)
    torch.testing.assert_close(model.calculate_loss(batch), loss, rtol=1e-7, atol=0)
