"""A device other than the CPU, for catching device bugs on a machine without a GPU.

Inside :class:`VirtualDevice` every tensor on the ``meta`` device is an :class:`OnDevice`:
it reports ``device='meta'`` but holds real CPU data, so models compute real numbers (sparse
products, ``torch.unique``, host reads included), while the mode checks every operation as a
GPU would, only more strictly:

* an operation that mixes tensors on the device with non-scalar CPU tensors raises
  :class:`DeviceMixError` (on CUDA: "Expected all tensors to be on the same device", or for
  indexing with CPU indices a hidden copy and wait);
* a tensor made without ``device=`` (``torch.zeros(n)``, ``torch.arange(n)``) is a CPU tensor, so
  using it with the model's tensors fails the same way;
* moving data explicitly (``.to(device)``, ``.cpu()``, ``copy_``) is allowed;
* every read of device data on the host (``.item()``, ``bool(t)``, ``int(t)``, ``.cpu()``) is
  counted in :attr:`VirtualDevice.host_reads` (on a GPU each one waits for the device to finish
  its queued work).

``torch.autocast`` has no ``meta`` device type: mixed precision is checked on the CPU
(tests/test_mixed_precision.py), and on a GPU by scripts/gpu_check.sh.
"""

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

#: The device a model is moved to inside :class:`VirtualDevice`.
DEVICE = torch.device("meta")


class DeviceMixError(RuntimeError):
    """An operation used CPU tensors together with tensors on the model's device."""


class OnDevice(torch.Tensor):
    """A tensor on :data:`DEVICE` holding real CPU data (``elem``), for :class:`VirtualDevice`."""

    elem: torch.Tensor

    @staticmethod
    def __new__(cls, elem):
        # A compressed sparse layout (CSR) cannot be a wrapper's; it shows as strided, and every
        # operation still reaches the real CSR tensor through the mode.
        layout = torch.sparse_coo if elem.layout == torch.sparse_coo else torch.strided
        kwargs = dict(dtype=elem.dtype, layout=layout, device=DEVICE, requires_grad=elem.requires_grad)
        if elem.layout == torch.strided:
            kwargs.update(strides=elem.stride(), storage_offset=elem.storage_offset())
        wrapper = torch.Tensor._make_wrapper_subclass(cls, elem.size(), **kwargs)
        wrapper.elem = elem.detach() if elem.requires_grad else elem  # autograd is the wrapper's
        return wrapper

    __torch_function__ = torch._C._disabled_torch_function_impl

    def __repr__(self):
        return f"OnDevice({self.elem!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError(f"{func}: a tensor on the virtual device used outside VirtualDevice")


def _on_virtual(device):
    return device is not None and torch.device(device).type == DEVICE.type


def _tensors(tree):
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


class VirtualDevice(TorchDispatchMode):
    """Run models on :data:`DEVICE` with real data; see the module docstring.

    Attributes:
        host_reads (int): reads of device values on the host so far.
    """

    def __init__(self):
        super().__init__()
        self.host_reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = func.overloadpacket.__name__
        device = kwargs.pop("device", None)
        inputs = _tensors((args, kwargs))
        on_device = [t for t in inputs if isinstance(t, OnDevice)]
        for t in inputs:
            if not isinstance(t, OnDevice) and t.device.type == DEVICE.type:
                raise DeviceMixError(f"{func}: a {DEVICE.type} tensor without data (made by torch.tensor(..., "
                                     f"device=...)?); make it on the CPU and move it with .to(device)")
        host = [t for t in inputs if not isinstance(t, OnDevice) and not (t.dim() == 0 and t.device.type == "cpu")]
        unwrapped_args, unwrapped_kwargs = tree_map(lambda t: t.elem if isinstance(t, OnDevice) else t,
                                                    (args, kwargs))
        if name in ("_to_copy", "copy_"):  # explicit moves between the host and the device
            if name == "_to_copy" and device is not None:
                unwrapped_kwargs["device"] = torch.device("cpu")
            out = func(*unwrapped_args, **unwrapped_kwargs)
            if name == "copy_":
                return args[0]
            stays = device is None and bool(on_device)
            if on_device and not (_on_virtual(device) or stays):
                self.host_reads += 1  # the device's data copied to the host
            return OnDevice(out) if _on_virtual(device) or stays else out
        if device is not None:  # a factory: made on the device if asked, from any host data
            unwrapped_kwargs["device"] = torch.device("cpu") if _on_virtual(device) else device
            wrap = _on_virtual(device)
        else:
            if on_device and host:
                shapes = ", ".join(str(tuple(t.shape)) for t in host)
                raise DeviceMixError(f"{func}: CPU tensor(s) of shape {shapes} used with tensors on the model's "
                                     f"device (made without device=, or never moved?)")
            wrap = bool(on_device)
        if name == "_local_scalar_dense" and on_device:
            self.host_reads += 1
        out = func(*unwrapped_args, **unwrapped_kwargs)
        if not wrap:
            return out
        same = {id(t.elem): t for t in on_device}  # in-place results are their input

        def rewrap(t):
            if isinstance(t, torch.Tensor) and not isinstance(t, OnDevice):
                kept = same.get(id(t))
                return OnDevice(t) if kept is None else kept
            return t

        return tree_map(rewrap, out)


def on_host(tensor):
    """The CPU tensor behind ``tensor`` (an :class:`OnDevice`, or a CPU tensor as it is)."""
    return tensor.elem if isinstance(tensor, OnDevice) else tensor
