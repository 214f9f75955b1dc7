"""This package's models, one per file: GTC and the multi-modal baselines it is compared with."""

from recbole_gtc.model.general_recommender.dragon import DRAGON
from recbole_gtc.model.general_recommender.freedom import FREEDOM
from recbole_gtc.model.general_recommender.gtc import GTC
from recbole_gtc.model.general_recommender.lgmrec import LGMRec
from recbole_gtc.model.general_recommender.vbpr import VBPR

__all__ = ["DRAGON", "FREEDOM", "GTC", "LGMRec", "VBPR"]
