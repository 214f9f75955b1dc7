"""Running models: the library entry points (:mod:`.quick_start`), recommendations from a
checkpoint (:mod:`.recommend`) and multi-process launch (:mod:`.distributed`). The command line
that dispatches to them and to studies is :mod:`recbole_gtc.cli`."""

from recbole_gtc.quick_start.quick_start import load_config, run_recbole_gtc

__all__ = ["load_config", "run_recbole_gtc"]
