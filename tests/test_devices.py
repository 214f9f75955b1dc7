"""Device bugs caught without a GPU: every multi-modal model on a device other than the CPU.

Each model of the plugin's registry is built on the CPU (as the runner builds it), moved to the
``meta`` device of :mod:`virtual_device` (real data, every operation checked) and run through
one training step as the trainer runs it: epoch start, forward and loss, backward, then
full-sort scoring in evaluation mode. A tensor left on the CPU, or made without the model's
device, fails the step; the numbers must be the CPU's. The same steps on a real GPU are the
``gpu``-marked test at the end (skipped without CUDA; scripts/gpu_check.sh runs it).
"""

import pytest
import torch
from recbole.data.interaction import Interaction
from toydata import N_ITEMS, N_USERS, features, leak_splits, one_thread, prepare, write_dataset  # noqa: F401
from virtual_device import DEVICE, DeviceMixError, OnDevice, VirtualDevice, on_host

from recbole_gtc.model.loss import symile_loss
from recbole_gtc.utils.utils import _PLUGIN_MODELS, get_model

#: Toy-sized keys per model (as tests/test_mm_models.py's SPEC).
SMALL = {"GTC": {"user_graph_k": 5, "knn_k": 4, "embedding_size": 16}, "DRAGON": {"user_graph_k": 5, "knn_k": 4},
         "FREEDOM": {"knn_k": 4}}
#: Every model, and GTC's other code paths (candidate scopes, the pairwise TC loss, no diffusion).
CASES = [(model, {}) for model in sorted(_PLUGIN_MODELS)] + [
    ("GTC", {"tc_scope": "sampled", "tc_candidates": 8}), ("GTC", {"tc_scope": "batch"}),
    ("GTC", {"tc_mode": "pairwise"}), ("GTC", {"use_diffusion": False, "use_gate": False}),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("devices")
    write_dataset(root, "mm2", leak_splits(), features(("image", "text")), N_ITEMS)
    return root


def _id(value):
    if isinstance(value, str):
        return value
    return ",".join(f"{k}={v}" for k, v in value.items()) or "default"


def _model(root, name, overrides):
    config, _, train = prepare(root, "mm2", name, train_batch_size=64, **SMALL.get(name, {}), **overrides)
    torch.manual_seed(0)
    return get_model(name)(config, train.dataset), next(iter(train))


def _step(model, batch, device):
    """One training step and the evaluation scores, as the trainer runs them on ``device``."""
    model.to(device)
    hook = getattr(model, "on_epoch_start", None)
    if hook is not None:
        hook(3)
    model.train()
    torch.manual_seed(5)  # the step's draws (negatives are in the batch; noise, timesteps, candidates)
    loss = model.calculate_loss(batch.to(device))
    loss.backward()
    model.eval()
    users = Interaction({"user_id": torch.arange(1, N_USERS + 1)}).to(device)
    return loss, model.full_sort_predict(users)


def _same(device_value, cpu_value):
    torch.testing.assert_close(on_host(device_value).detach(), cpu_value.detach(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, overrides", CASES, ids=_id)
def test_a_training_step_and_scoring_on_another_device(root, name, overrides):
    model, batch = _model(root, name, overrides)
    twin, _ = _model(root, name, overrides)  # the same weights (seed 0), trained on the CPU
    cpu_loss, cpu_scores = _step(twin, batch, "cpu")
    with VirtualDevice():
        loss, scores = _step(model, batch, DEVICE)
        left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers())
                if not isinstance(t, OnDevice)]
        assert not left, f"{name}: not moved by .to(device): {left}"
        assert isinstance(loss, OnDevice) and isinstance(scores, OnDevice)
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        assert all(isinstance(g, OnDevice) for g in grads.values())
        _same(loss, cpu_loss)
        _same(scores, cpu_scores)
        cpu_grads = {n: p.grad for n, p in twin.named_parameters() if p.grad is not None}
        assert grads.keys() == cpu_grads.keys()
        for n in grads:
            _same(grads[n], cpu_grads[n])


def test_the_virtual_device_catches_a_tensor_left_on_the_cpu():
    """The check itself: a tensor made without ``device=`` and used with the model's fails."""
    with VirtualDevice():
        x = torch.ones(4, 3).to(DEVICE)
        assert isinstance(x + torch.ones(4, 3, device=x.device), OnDevice)
        assert isinstance(x * torch.tensor(2.0), OnDevice)  # CPU scalars mix, as on CUDA
        with pytest.raises(DeviceMixError, match="CPU tensor"):
            x + torch.arange(3)
        with pytest.raises(DeviceMixError, match="CPU tensor"):
            x[torch.tensor([0, 2])]
        with pytest.raises(DeviceMixError, match="without data"):
            x + torch.tensor([1.0, 2.0, 3.0], device=DEVICE)
        linear = torch.nn.Linear(3, 2).to(DEVICE)
        with pytest.raises(DeviceMixError):
            linear(torch.ones(4, 3))


@pytest.mark.parametrize("with_grad", [True, False])
def test_the_tc_loss_reads_the_device_once_per_anchor_not_per_chunk(with_grad):
    """On a GPU every host read waits for the device; 10 chunks of 2 rows, 3 anchors: 3 reads."""
    generator = torch.Generator().manual_seed(0)
    views = [torch.nn.functional.normalize(torch.randn(20, 4, generator=generator), dim=1) for _ in range(3)]
    with VirtualDevice() as mode:
        views = [v.to(DEVICE).requires_grad_(with_grad) for v in views]
        with torch.set_grad_enabled(with_grad):
            loss = symile_loss(views, torch.tensor(5.0).to(DEVICE), chunk_size=2,
                               generator=torch.Generator().manual_seed(1))
        assert mode.host_reads == 3
    assert torch.isfinite(on_host(loss))


@pytest.mark.gpu
@pytest.mark.parametrize("name, overrides", CASES, ids=_id)
def test_a_training_step_and_scoring_on_cuda(root, name, overrides):
    model, batch = _model(root, name, overrides)
    twin, _ = _model(root, name, overrides)
    cpu_loss, cpu_scores = _step(twin, batch, "cpu")
    loss, scores = _step(model, batch, "cuda")
    assert loss.device.type == "cuda" and scores.device.type == "cuda"
    assert all(p.grad.device.type == "cuda" for p in model.parameters() if p.grad is not None)
    # Another device's kernels and random streams (noise, candidates): close, not equal.
    assert torch.isfinite(loss) and torch.isfinite(scores).all()
    assert scores.shape == cpu_scores.shape
