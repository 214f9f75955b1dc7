"""The noise schedule and one-step maths (recbole_gtc/model/layers/diffusion.py)."""

import math

import numpy as np
import pytest
import torch

from recbole_gtc.model.layers.diffusion import GaussianDiffusion, timestep_embedding


def test_schedule_matches_numpy():
    diffusion = GaussianDiffusion(noise_steps=600, beta_start=1e-4, beta_end=0.01)
    betas = np.linspace(1e-4, 0.01, 600)
    abar = np.cumprod(1.0 - betas)
    for name in ("betas", "alphas", "alphas_cumprod"):
        buf = getattr(diffusion, name)
        assert buf.dtype == torch.float32 and buf.shape == (600,)
    for t in (0, 1, 300, 599):
        assert diffusion.betas[t].item() == pytest.approx(betas[t], rel=1e-6)
        assert diffusion.alphas[t].item() == pytest.approx(1.0 - betas[t], rel=1e-6)
        assert diffusion.alphas_cumprod[t].item() == pytest.approx(abar[t], rel=1e-5)
    # A non-default end changes the schedule.
    other = GaussianDiffusion(noise_steps=600, beta_end=0.02)
    assert other.alphas_cumprod[-1].item() == pytest.approx(np.cumprod(1 - np.linspace(1e-4, 0.02, 600))[-1], rel=1e-5)
    assert other.alphas_cumprod[-1] < diffusion.alphas_cumprod[-1]


def test_q_sample_formula_and_predict_x0_inverts_it():
    diffusion = GaussianDiffusion(noise_steps=600)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 16, generator=g)
    noise = torch.randn(3, 16, generator=g)
    t = torch.tensor([1, 300, 599])
    x_t = diffusion.q_sample(x0, t, noise)
    abar = torch.from_numpy(np.cumprod(1 - np.linspace(1e-4, 0.01, 600))[t.numpy()]).float().unsqueeze(1)
    torch.testing.assert_close(x_t, abar.sqrt() * x0 + (1 - abar).sqrt() * noise)
    torch.testing.assert_close(diffusion.predict_x0(x_t, t, noise), x0, atol=1e-4, rtol=1e-4)
    # A wrong noise estimate does not recover x0.
    assert not torch.allclose(diffusion.predict_x0(x_t, t, torch.zeros_like(noise)), x0, atol=1e-2)


def test_sample_timesteps_range_shape_and_determinism():
    diffusion = GaussianDiffusion(noise_steps=10)
    t = diffusion.sample_timesteps(5000)
    assert t.shape == (5000,) and t.dtype == torch.long
    assert t.min().item() == 1 and t.max().item() == 9
    a = diffusion.sample_timesteps(50, generator=torch.Generator().manual_seed(3))
    b = diffusion.sample_timesteps(50, generator=torch.Generator().manual_seed(3))
    c = diffusion.sample_timesteps(50, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_timestep_embedding_hand_formula():
    t = torch.tensor([0, 1, 7, 599])
    dim = 8
    emb = timestep_embedding(t, dim)
    assert emb.shape == (4, dim)
    for row, step in enumerate(t.tolist()):
        for j in range(dim // 2):
            f = 10000.0 ** (-2.0 * j / dim)
            assert emb[row, j].item() == pytest.approx(math.sin(step * f), abs=1e-5)
            assert emb[row, dim // 2 + j].item() == pytest.approx(math.cos(step * f), abs=1e-5)
    with pytest.raises(ValueError):
        timestep_embedding(t, 7)
