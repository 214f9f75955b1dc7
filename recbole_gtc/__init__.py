"""recbole-gtc: GTC for multi-modal recommendation as a RecBole plugin."""

from recbole_gtc import kernels as _kernels

_kernels.pin_before_torch()  # only with RECBOLE_GTC_CPU_KERNELS=avx2, before torch loads (recbole_gtc.kernels)

from recbole_gtc import compat as _compat  # noqa: E402  (imports torch)

_compat.apply()

__version__ = "0.1.0"
