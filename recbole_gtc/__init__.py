"""recbole-gtc: GTC for multi-modal recommendation as a RecBole plugin.

The subpackages mirror RecBole's: ``config`` (the configuration and its validation), ``data``
(multi-modal datasets and samplers), ``model`` (the multi-modal base, ``layers``, ``loss`` and
one file per model under ``general_recommender``), ``trainer`` (the trainer and run folders),
``evaluator`` (per-user metric values), ``quick_start`` (the runner, recommendations and
multi-process launch), ``utils`` (paths, errors, files, runtime patches), plus ``study``
(multi-seed comparison and tuning), ``prepare`` (dataset import and builders) and ``cli`` (the
command line, above them all).
"""

__version__ = "0.1.0"

from recbole_gtc.utils import kernels as _kernels  # noqa: E402

_kernels.pin_before_torch()  # only with RECBOLE_GTC_CPU_KERNELS=avx2, before torch loads (recbole_gtc.utils.kernels)

from recbole_gtc.utils import compat as _compat  # noqa: E402  (imports torch)

_compat.apply()
