"""The conditional noise predictor of GTC's diffusion filter (docs/method.md, step 5).

A small U-Net-shaped MLP, exactly the released architecture. With ``d`` the
embedding size and ``DL(a->b) = ReLU(Lin(b->b)(ReLU(Lin(a->b)(x))))``::

    in  = [x_t || cond] + time_embedding(t, 2d)             (n, 2d)
    x1  = DL(2d->64)(in)                                     (n, 64)
    x2  = DL(64->128)(x1)                                    (n, 128)
    x3  = DL(128->128)(x2)                                   (n, 128)
    b   = DL(256->128)(DL(128->256)(x3))                     (n, 128)
    u1  = DL(256->128)([x2 || Lin(128->128)(b)])             (n, 128)
    u2  = DL(128->64)([x1 || Lin(128->64)(u1)])              (n, 64)
    out = Lin(64->d)(u2)                                     (n, d)

The hidden widths 64/128/256 are fixed (they do not scale with d); time enters
only at the input. At d = 64 this has 309,248 parameters.
"""

import torch
import torch.nn as nn

from recbole_gtc.model.layers.diffusion import timestep_embedding


class _DoubleLinear(nn.Module):
    """``DL(a->b)``: two Linear+ReLU layers, ``(n, a) -> (n, b)``."""

    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim), nn.ReLU())

    def forward(self, x):
        return self.net(x)


class ConditionalDenoiser(nn.Module):
    """Predicts the noise in ``x_t`` given the timestep and the item ID embedding.

    Args:
        emb_dim (int): d, the width of ``x_t``, ``cond`` and the output.
    """

    def __init__(self, emb_dim=64):
        super().__init__()
        self.emb_dim = emb_dim
        self.down1 = _DoubleLinear(2 * emb_dim, 64)
        self.down2 = _DoubleLinear(64, 128)
        self.down3 = _DoubleLinear(128, 128)
        self.bottleneck = nn.Sequential(_DoubleLinear(128, 256), _DoubleLinear(256, 128))
        self.skip_proj2 = nn.Linear(128, 128)
        self.up1 = _DoubleLinear(256, 128)
        self.skip_proj1 = nn.Linear(128, 64)
        self.up2 = _DoubleLinear(128, 64)
        self.out = nn.Linear(64, emb_dim)

    def forward(self, x_t, t, cond):
        """
        Args:
            x_t (Tensor): ``(n, d)`` noisy content features.
            t (Tensor): ``(n,)`` timesteps.
            cond (Tensor): ``(n, d)`` item ID embedding; not detached, so the
                diffusion loss also trains it (as released).

        Returns:
            Tensor: ``(n, d)`` predicted noise ``eps_hat``.
        """
        h = torch.cat([x_t, cond], dim=-1)
        h = h + timestep_embedding(t, 2 * self.emb_dim).to(h.dtype)
        x1 = self.down1(h)
        x2 = self.down2(x1)
        x3 = self.down3(x2)
        b = self.bottleneck(x3)
        u1 = self.up1(torch.cat([x2, self.skip_proj2(b)], dim=-1))
        u2 = self.up2(torch.cat([x1, self.skip_proj1(u1)], dim=-1))
        return self.out(u2)
