"""Regions of a model that stay in float32 under mixed precision, on any device type."""

import contextlib

import torch


def autocast_enabled(device_type):
    """Whether ``torch.autocast`` is on for ``device_type`` (False where autocast does not exist)."""
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def float32_region(device_type):
    """``torch.autocast(device_type, enabled=False)``: inside it operations run in their
    inputs' dtypes. A no-op on a device type without autocast (e.g. ``meta``)."""
    if not torch.amp.is_autocast_available(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)
