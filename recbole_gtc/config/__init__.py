"""Configuration: RecBole's ``Config`` with this package's defaults (:mod:`.configurator`),
the rule helpers (:mod:`.rules`) and the checks of every key before any work (:mod:`.validation`)."""

from recbole_gtc.config.configurator import MMConfig, parse_override

__all__ = ["MMConfig", "parse_override"]
