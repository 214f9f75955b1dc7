"""Dataset preparation: MMRec import and the bundled dataset builders.

Command line (``python -m recbole_gtc.prepare --help``):

* ``mmrec SRC_DIR --dataset NAME``: import a user-supplied MMRec folder
  (:mod:`recbole_gtc.prepare.mmrec`);
* ``synthetic --dataset NAME [--preset tiny|small|baby]``: the planted synthetic
  dataset (:mod:`recbole_gtc.prepare.synthetic`; ``dataset/synth-mm`` is ``small``);
* ``movielens``: ``dataset/ml-100k-mm`` from RecBole's bundled MovieLens-100K
  (:mod:`recbole_gtc.prepare.movielens`).
"""

from recbole_gtc.prepare.mmrec import DatasetImportError, import_mmrec

__all__ = ["DatasetImportError", "import_mmrec"]
