#!/usr/bin/env bash
# Fetch, here, the wheels that benchmarks/gpu_check.sh needs on the lent GPU machine (Python 3.12, x86-64,
# no network there): the dependencies of kmat its image lacks. Writes .whl/ (ignored by git, about 34 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    "open_clip_torch>=2.24" ftfy wcwidth "pot>=0.9.4" "openpyxl>=3.1" et_xmlfile
ls -la .whl
