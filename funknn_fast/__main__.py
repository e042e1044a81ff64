"""``python -m funknn_fast``: the ``funknn`` command line."""

import sys

from funknn_fast.cli import main

sys.exit(main())
