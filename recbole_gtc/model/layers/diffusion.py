"""Gaussian diffusion maths of the GTC content filter (docs/method.md, steps 2, 3, 4 and 6).

The schedule is linear in beta: ``beta = linspace(beta_start, beta_end, T)``,
``alpha = 1 - beta``, ``abar = cumprod(alpha)``. GTC only ever takes one step:
noise a clean feature to timestep t (:meth:`GaussianDiffusion.q_sample`) and read
back the one-step clean estimate from a predicted noise
(:meth:`GaussianDiffusion.predict_x0`); there is no iterative sampling.
"""

import math

import numpy as np
import torch


class GaussianDiffusion(torch.nn.Module):
    """Noise schedule with no parameters, only float32 buffers of shape ``(T,)``.

    Buffers: ``betas``, ``alphas``, ``alphas_cumprod``. They are derived from the
    constructor arguments, so they are not saved in the state dict.

    Args:
        noise_steps (int): T, the number of timesteps.
        beta_start (float): beta at t = 0.
        beta_end (float): beta at t = T - 1.
    """

    def __init__(self, noise_steps=600, beta_start=1e-4, beta_end=0.01):
        super().__init__()
        if noise_steps < 2:
            raise ValueError(f"noise_steps must be >= 2 (timesteps are drawn from 1..T-1), got {noise_steps}")
        self.noise_steps = int(noise_steps)
        # float64 for the product so abar at large t is not eroded by float32 rounding.
        betas = np.linspace(beta_start, beta_end, self.noise_steps, dtype=np.float64)
        alphas = 1.0 - betas
        alphas_cumprod = np.cumprod(alphas)
        self.register_buffer("betas", torch.from_numpy(betas).float(), persistent=False)
        self.register_buffer("alphas", torch.from_numpy(alphas).float(), persistent=False)
        self.register_buffer("alphas_cumprod", torch.from_numpy(alphas_cumprod).float(), persistent=False)

    def sample_timesteps(self, n, generator=None):
        """One timestep per row, uniform on ``{1, ..., T-1}``.

        Args:
            n (int): number of timesteps.
            generator (torch.Generator, optional): source of randomness (any device).

        Returns:
            LongTensor: ``(n,)`` on the buffers' device.
        """
        device = generator.device if generator is not None else self.betas.device
        t = torch.randint(1, self.noise_steps, (n,), generator=generator, device=device)
        return t.to(self.betas.device)

    def _abar(self, t, like):
        """``abar_t`` as a column ``(n, 1)`` in ``like``'s dtype, to broadcast over features."""
        return self.alphas_cumprod[t.long()].to(like.dtype).unsqueeze(-1)

    def q_sample(self, x0, t, noise):
        """Forward noising ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``.

        Args:
            x0 (Tensor): ``(n, d)`` clean features.
            t (LongTensor): ``(n,)`` timesteps.
            noise (Tensor): ``(n, d)`` standard normal noise.

        Returns:
            Tensor: ``(n, d)``.
        """
        abar = self._abar(t, x0)
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def predict_x0(self, x_t, t, eps_hat):
        """One-step clean estimate ``(x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)``.

        Args:
            x_t (Tensor): ``(n, d)`` noisy features.
            t (LongTensor): ``(n,)`` timesteps.
            eps_hat (Tensor): ``(n, d)`` predicted noise.

        Returns:
            Tensor: ``(n, d)``.
        """
        abar = self._abar(t, x_t)
        return (x_t - (1.0 - abar).sqrt() * eps_hat) / abar.sqrt()


def timestep_embedding(t, dim):
    """Sinusoidal embedding of scalar timesteps.

    ``emb[:, j] = sin(t * f_j)`` and ``emb[:, dim/2 + j] = cos(t * f_j)`` for
    ``j < dim/2``, with ``f_j = 10000^(-2j/dim)``.

    Args:
        t (Tensor): ``(n,)`` timesteps, integer or float.
        dim (int): embedding width, even.

    Returns:
        Tensor: ``(n, dim)`` float32 on ``t``'s device.
    """
    if dim % 2:
        raise ValueError(f"timestep_embedding needs an even width, got {dim}")
    half = dim // 2
    j = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(10000.0) * 2.0 * j / dim)
    angles = t.float().unsqueeze(-1) * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
