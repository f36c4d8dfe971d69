"""``python -m kmat``: the command line."""

import sys

from kmat.cli import main

sys.exit(main())
