"""``python -m recbole_gtc``: the runner (see :mod:`recbole_gtc.cli`)."""

import sys

from recbole_gtc.cli import main

sys.exit(main())
