"""``python -m kmat.cli``."""

import sys

from kmat.cli import main

sys.exit(main())
