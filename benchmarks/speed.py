"""Speed benchmark (not a test): `python benchmarks/speed.py [--arch reduced|full] [--device cpu|cuda]`.

Same as `kmat bench`; see `kmat.tools.bench` for what is measured. Results are recorded in the README.
"""

import sys

from kmat.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
