#!/usr/bin/env bash
# GPU smoke check of fastmri-pun on one CUDA GPU (a few minutes), from the repository root:
#
#   bash benchmarks/gpu_check.sh            # results: benchmarks/results/gpu_*.json
#   bash benchmarks/gpu_check.sh --cpu      # the same steps on the CPU (checks this script; slow)
#
# Steps, each reported as PASS or FAIL (the later steps run even when one fails):
#   1. demo       build the demo set (128², 8 coils) in a temporary folder
#   2. train      one epoch of `train --prune pun-it` (default loss) on --accelerator gpu
#   3. prune      `prune_at_init` of a fastmri VarNet on CUDA with a demo-set DataLoader
#   4. evaluate   `evaluate` of the trained checkpoint on two shifts (in-dist, noise)
#   5. espirit    `espirit --device cuda` on the demo set's validation split
#   6. bench      benchmarks/bench_gpu.py (MoDL step float32/TF32/AMP, ESPIRiT, inference)
# The verdicts go to RESULTS/gpu_check.json (RESULTS: $GPU_CHECK_RESULTS, default
# benchmarks/results; with --cpu the temporary folder unless set). Everything else is written
# under a temporary folder (mktemp -d in $TMPDIR), removed at the end unless a step failed (its
# logs are kept there). Exit status: 0 when every step passed (or without CUDA), 1 otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY=python
if [[ -x .venv/bin/python ]]; then PY="$ROOT/.venv/bin/python"; fi

DEVICE=cuda
ACCEL=gpu
if [[ "${1:-}" == "--cpu" ]]; then
  DEVICE=cpu
  ACCEL=cpu
elif ! "$PY" -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "no CUDA device: skipping the GPU check"
  exit 0
fi

WORK="$(mktemp -d -t fastmri_pun_gpu_check.XXXXXX)"  # in $TMPDIR
export FASTMRI_PUN_CACHE="$WORK/cache"  # ESPIRiT map cache: computed afresh, outside ~/.cache
DATA="$WORK/demo"
RUN="$WORK/run"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
if [[ "$DEVICE" == cpu ]]; then
  RESULTS="${GPU_CHECK_RESULTS:-$WORK/results}"
else
  RESULTS="${GPU_CHECK_RESULTS:-$ROOT/benchmarks/results}"
fi
mkdir -p "$RESULTS"
: >"$LOGS/verdicts.tsv"
FAILED=0

# run_step NAME COMMAND...: run it with its output in LOGS/NAME.log, print and record the verdict
run_step() {
  local name=$1 start status detail rc=0
  shift
  start=$(date +%s)
  "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
  if [[ "$rc" == 0 ]]; then
    status=PASS
    detail="$(tail -n 1 "$LOGS/$name.log" | tr '\t' ' ' | cut -c1-200)"
  else
    status=FAIL
    FAILED=1
    detail="exit $rc (log: $LOGS/$name.log)"
  fi
  detail="${detail//"$WORK"/WORK}"  # no machine paths in the results
  local seconds=$(($(date +%s) - start))
  printf '%-9s %s  %4ss  %s\n' "$name" "$status" "$seconds" "$detail"
  if [[ "$status" == FAIL ]]; then tail -n 15 "$LOGS/$name.log" | sed 's/^/    | /'; fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$seconds" "$detail" >>"$LOGS/verdicts.tsv"
}

# (the check functions run as `if` conditions, where set -e does not apply: hence the && chains)
check_train() {
  timeout 300 "$PY" -m fastmri_pun.train --data_path "$DATA" --output_dir "$RUN" \
    --prune pun-it --max_epochs 1 --accelerator "$ACCEL" --devices 1 \
    --enable_progress_bar false &&
    test -s "$RUN/checkpoints/best.ckpt" &&
    echo "checkpoint $(du -h "$RUN/checkpoints/best.ckpt" | cut -f1)"
}

check_prune() {
  timeout 180 "$PY" - "$DATA/multicoil_train" "$DEVICE" <<'EOF'
import sys

import fastmri
import torch
from fastmri.data import SliceDataset
from fastmri.data.subsample import create_mask_for_mask_type
from fastmri.data.transforms import VarNetDataTransform

import fastmri_pun

folder, device = sys.argv[1], torch.device(sys.argv[2])
mask = create_mask_for_mask_type("equispaced_fraction", [0.08], [4])
data = SliceDataset(folder, "multicoil", transform=VarNetDataTransform(mask, use_seed=True))
loader = torch.utils.data.DataLoader(data, batch_size=1)
model = fastmri.models.VarNet(num_cascades=4).to(device)
model = fastmri_pun.prune_at_init(model, loader, density=0.03, method="pun-it", steps=20)
report = model.prune_report
devices = {p.device.type for p in model.parameters()} | {b.device.type for b in model.buffers()}
assert devices == {device.type}, devices
assert abs(report.density - 0.03) < 1e-3, report.density
print(f"VarNet pruned on {device}: {report.kept} of {report.total} weights, "
      f"{report.wall_time_s:.1f} s")
EOF
}

check_evaluate() {
  timeout 180 "$PY" -m fastmri_pun.evaluate --checkpoints "$RUN/checkpoints/best.ckpt" \
    --data_path "$DATA" --shifts in-dist noise --output_dir "$WORK/eval" \
    --accelerator "$ACCEL" --n_boot 100 --enable_progress_bar false &&
    test -s "$WORK/eval/summary.csv" &&
    echo "summary.csv: $(wc -l <"$WORK/eval/summary.csv") lines"
}

check_espirit() {
  timeout 180 "$PY" -m fastmri_pun.app.espirit --data_path "$DATA/multicoil_val" \
    --device "$DEVICE" --maps_cache_dir "$WORK/maps" --enable_progress_bar false &&
    test -n "$(ls -A "$WORK/maps")"
}

echo "fastmri-pun GPU check on $DEVICE (work folder $WORK)"
START=$(date +%s)
run_step demo timeout 300 "$PY" -m fastmri_pun.demo --output_dir "$DATA" --demo_size 128 \
  --demo_coils 8 --enable_progress_bar false
run_step train check_train
run_step prune check_prune
run_step evaluate check_evaluate
run_step espirit check_espirit
run_step bench timeout 420 "$PY" benchmarks/bench_gpu.py --output_dir "$RESULTS"

"$PY" - "$LOGS/verdicts.tsv" "$RESULTS" "$DEVICE" "$(($(date +%s) - START))" <<'EOF'
import sys

sys.path.insert(0, "benchmarks")
import common

tsv, results, device, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = [line.rstrip("\n").split("\t") for line in open(tsv, encoding="utf-8") if line.strip()]
rows = [[name, status, int(s), detail] for name, status, s, detail in rows]
machine = common.machine_description()
if device == "cuda":
    import torch

    cap = torch.cuda.get_device_capability()
    machine["gpu capability"] = f"{cap[0]}.{cap[1]}"
    machine["cuda (torch build)"] = str(torch.version.cuda)
passed = sum(r[1] == "PASS" for r in rows)
path = common.write_results(
    f"{results}/gpu_check.json",
    title="GPU check (benchmarks/gpu_check.sh)",
    command="bash benchmarks/gpu_check.sh" + (" --cpu" if device == "cpu" else ""),
    machine=machine,
    settings={"device": device, "demo": "128², 8 coils, default layout", "total seconds": seconds},
    notes=["Each step's last output line (or its exit status) as detail; bench_gpu.py's "
           "numbers are in the gpu_*.json files of the same run."],
    targets=[common.target("steps passed", passed, ">=", len(rows))],
    tables=[common.table("Steps", ["step", "verdict", "seconds", "detail"], rows,
                         ["", "", "", ""], "llrl")],
)
print(f"{passed} of {len(rows)} steps passed in {seconds} s; wrote {path}")
EOF

if [[ "$FAILED" == 0 ]]; then
  rm -rf "$WORK"
else
  echo "logs kept in $LOGS"
fi
exit "$FAILED"
