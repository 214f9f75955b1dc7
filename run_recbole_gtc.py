"""Train and evaluate GTC or RecBole general recommenders on a (multi-modal) dataset.

    python run_recbole_gtc.py --model=GTC --dataset=baby
    python run_recbole_gtc.py --model=GTC,LightGCN,BPR --dataset=synth-mm --epochs=50
    python run_recbole_gtc.py --model=LightGCN --config_files="a.yaml b.yaml" --learning_rate=0.002

The same command line as ``recbole-gtc`` and ``python -m recbole_gtc`` (see ``--help``);
this file mirrors RecBole's run_recbole.py and works from any folder.
"""

import sys

from recbole_gtc.cli import main

if __name__ == "__main__":
    sys.exit(main())
