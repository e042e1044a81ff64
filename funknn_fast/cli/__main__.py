"""``python -m funknn_fast.cli``: the ``funknn`` command line."""

import sys

from funknn_fast.cli import main

sys.exit(main())
