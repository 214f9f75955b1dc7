"""The conditional noise predictor (recbole_gtc/model/layers/denoiser.py)."""

import torch

from recbole_gtc.model.layers.denoiser import ConditionalDenoiser


def _linear(a, b):
    return a * b + b


def _dl(a, b):
    return _linear(a, b) + _linear(b, b)


def expected_parameters(d):
    """Parameter count of the step-5 architecture in docs/method.md."""
    return (
        _dl(2 * d, 64) + _dl(64, 128) + _dl(128, 128)  # down path
        + _dl(128, 256) + _dl(256, 128)  # bottleneck
        + _linear(128, 128) + _dl(256, 128)  # u1
        + _linear(128, 64) + _dl(128, 64)  # u2
        + _linear(64, d)  # out
    )


def test_shape_and_parameter_count():
    torch.manual_seed(0)
    for d in (64, 32):
        model = ConditionalDenoiser(d)
        n_params = sum(p.numel() for p in model.parameters())
        assert n_params == expected_parameters(d)
        out = model(torch.randn(5, d), torch.randint(1, 600, (5,)), torch.randn(5, d))
        assert out.shape == (5, d)
    assert expected_parameters(64) == 309248  # "about 0.3 M"


def test_gradient_reaches_cond_and_every_parameter():
    torch.manual_seed(0)
    model = ConditionalDenoiser(16)
    cond = torch.randn(64, 16, requires_grad=True)
    out = model(torch.randn(64, 16), torch.randint(1, 600, (64,)), cond)
    (out ** 2).sum().backward()
    assert cond.grad is not None and cond.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_time_and_condition_change_the_output():
    torch.manual_seed(0)
    model = ConditionalDenoiser(16)
    x, cond = torch.randn(4, 16), torch.randn(4, 16)
    base = model(x, torch.full((4,), 10), cond)
    assert not torch.allclose(base, model(x, torch.full((4,), 300), cond))
    assert not torch.allclose(base, model(x, torch.full((4,), 10), torch.randn(4, 16)))
    torch.testing.assert_close(base, model(x, torch.full((4,), 10), cond))
