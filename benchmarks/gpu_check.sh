#!/usr/bin/env bash
# The GPU checks of the speed work, as one prepared script for a machine lent with a GPU.
#
# What it measures (everything is printed and written under $OUT):
#   1. the machine: GPU, torch, CUDA;
#   2. `kmat bench` on BiomedCLIP's full architecture and the reduced one, fp32 and bf16
#      (bench_<arch>_<precision>.json: every figure; log.txt: the printed tables);
#   3. an end-to-end `kmat train` on the GPU, run twice with one seed (is it deterministic there?) and
#      once on the CPU (how far apart are the devices?);
#   4. `kmat demo --quick` on the GPU, timed;
#   5. how many runs one GPU holds: benchmarks/ray_grid.py's 16-run grid (SynthMed, demo backbone) as Ray
#      tasks with --gpus-per-run 1, 0.5, 0.25, 0.125 (1/2/4/8 runs per GPU), throughput in runs per minute
#      (ray_grid.json). Needs Ray on the machine (`pip install 'kmat[cluster]'`); without it the step says
#      so and is skipped (Ray's wheel, ~70 MB, does not fit in .whl/ with the others). KMAT_CHECK_RAY=0 skips it.
#
# On a machine without the project's dependencies (the lent H200 has torch, transformers, timm, but not
# open_clip_torch or POT), fetch their wheels here first, once:
#   bash benchmarks/gpu_wheels.sh          # writes .whl/ (ignored by git, about 34 MB)
# then run, with the device tool:  command "bash benchmarks/gpu_check.sh", carry [".whl"], timeout 540 s.
#
# Locally, as a smoke test of this script (no GPU, seconds):
#   KMAT_CHECK_DEVICE=cpu KMAT_CHECK_ARCHES=tiny KMAT_CHECK_DEMO=0 KMAT_CHECK_RAY=0 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
DEVICE=${KMAT_CHECK_DEVICE:-cuda}
ARCHES=${KMAT_CHECK_ARCHES:-full reduced}
DEMO=${KMAT_CHECK_DEMO:-1}
RAY=${KMAT_CHECK_RAY:-1}
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
if ls .whl/*.whl >/dev/null 2>&1 && ! $PY -c "import open_clip, ot" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/kmat-site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/kmat-site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export KMAT_CACHE=${KMAT_CACHE:-/tmp/kmat-check-cache} KMAT_PROGRESS=0 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
WORK=$(mktemp -d)
LOG="$OUT/log.txt"
kmat() { $PY -m kmat.cli "$@"; }
say() { echo "== $*" | tee -a "$LOG"; }

say "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, open_clip, transformers, ot; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'available', torch.cuda.is_available(), '| open_clip', open_clip.__version__, '| transformers', \
transformers.__version__, '| pot', ot.__version__)"; } 2>&1 | tee -a "$LOG"

for arch in $ARCHES; do
    for precision in fp32 bf16; do
        say "kmat bench --arch $arch --device $DEVICE --precision $precision"
        start=$(date +%s)
        kmat bench --arch "$arch" --device "$DEVICE" --precision "$precision" \
            --json "$OUT/bench_${arch}_${precision}.json" 2>&1 | tee -a "$LOG"
        echo "(wall $(( $(date +%s) - start )) s)" | tee -a "$LOG"
    done
done

say "end to end: kmat train on $DEVICE twice (seed 1) and on cpu once"
kmat backbone --size tiny --out "$WORK/tiny" >/dev/null && kmat toy-task --out "$WORK/toy" >/dev/null || exit 1
common=(--task "$WORK/toy" --method kmat --backbone "local-dir:$WORK/tiny" --epochs 3 --seed 1 --no-feature-cache
        --quiet)
for name in "$DEVICE-a:$DEVICE" "$DEVICE-b:$DEVICE" "cpu:cpu"; do
    kmat train "${common[@]}" --device "${name#*:}" --out "$WORK/${name%%:*}" >/dev/null 2>>"$LOG" \
        || echo "train on ${name#*:} failed" | tee -a "$LOG"
done
$PY - "$WORK" "$DEVICE" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
from pathlib import Path
import torch
from safetensors.torch import load_file
work, dev = Path(sys.argv[1]), sys.argv[2]
def load(name):
    folder = work / name
    if not (folder / "result.json").is_file():
        return None, None
    return json.loads((folder / "result.json").read_text()), load_file(str(folder / "class_embeddings.safetensors"))
runs = {k: load(k) for k in (f"{dev}-a", f"{dev}-b", "cpu")}
for k, (res, _) in runs.items():
    if res:
        print(k, {role: res["metrics"][role]["acc"] for role in ("high", "low")}, "s:", res["timing"])
(a, ea), (b, eb), (c, ec) = runs.values()
if a and b:
    same = all(torch.equal(ea[k], eb[k]) for k in ea)
    print(f"same seed twice on {dev}: embeddings {'bit-identical' if same else 'DIFFER'}",
          "" if same else max(float((ea[k] - eb[k]).abs().max()) for k in ea))
if a and c:
    print(f"{dev} vs cpu: max |difference| of the class embeddings",
          max(float((ea[k] - ec[k]).abs().max()) for k in ea if k in ec))
EOF

if [ "$DEMO" = 1 ]; then
    say "kmat demo --quick --device $DEVICE"
    start=$(date +%s)
    kmat demo --quick --device "$DEVICE" --quiet --out "$WORK/demo" 2>&1 | tail -8 | tee -a "$LOG"
    echo "(wall $(( $(date +%s) - start )) s)" | tee -a "$LOG"
fi
if [ "$RAY" = 1 ]; then
    say "Ray grid on $DEVICE: --gpus-per-run 1 0.5 0.25 0.125 (runs per GPU 1/2/4/8), runs per minute"
    if $PY -c "import ray" 2>/dev/null; then
        start=$(date +%s)
        $PY benchmarks/ray_grid.py --device "$DEVICE" --modes local --gpus-per-run 1 0.5 0.25 0.125 \
            --work "$WORK/ray-grid" --json "$OUT/ray_grid.json" 2>&1 | grep -v " pid=[0-9]*)" | tee -a "$LOG"
        echo "(wall $(( $(date +%s) - start )) s)" | tee -a "$LOG"
    else
        echo "Ray is not installed here (pip install 'kmat[cluster]'): step skipped" | tee -a "$LOG"
    fi
fi
say "done; files in $OUT"
grep -h "^speedup" "$LOG" | cat
