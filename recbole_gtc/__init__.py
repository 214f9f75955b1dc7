"""recbole-gtc: GTC for multi-modal recommendation as a RecBole plugin."""

from recbole_gtc import compat as _compat

_compat.apply()

__version__ = "0.1.0"
