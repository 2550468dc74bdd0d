#!/usr/bin/env bash
# The FastCHGNet issue's GPU measurements as one device call, most important first.
#
# Here, once:  echo /.whl/ >> .git/info/exclude; ../shared/device/wheels.sh .whl core reference
# Device call: run(command="bash experiments/chgnet_train_bench/gpu_runbook.sh", carry=[".whl"],
#                  timeout_s=570)
# Dry run on a CPU (no wheels needed where equijax is installed):
#              BENCH_ARGS="--limit 2 --batch-size 2 --steps 1" OUT=/tmp/runbook \
#                  bash experiments/chgnet_train_bench/gpu_runbook.sh
#
# Stages, each under `timeout` so that one slow stage never costs the others their results; each
# writes NAME.json (the bench's table as JSON) and NAME.log under $OUT (default: this folder):
#   1. core       conservative and direct heads against the PyTorch chgnet (timed first), both
#                 in float32 as the reference, with memory: the 50x / 20x / one-tenth goals
#   2. breakdown  JAX's default precision (TF32) and bf16: where the time goes (forward /
#                 forces+stress / param gradient), the optimized HLO's kernel counts, and the
#                 physical direct heads; no reference
#   3. memory     rematerialised blocks and the plain concatenated messages, for memory and speed
#   4. gates      the gated MLPs' fused first layers against two separate ones
# BUDGET_S (default 540) is the whole script's wall time; a stage gets at most its own cap and
# what is left of the budget.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-experiments/chgnet_train_bench}
mkdir -p "$out"
budget=${BUDGET_S:-540}
start=$(date +%s)
extra=${BENCH_ARGS:-}

if [ -d .whl ] && ! python3 -c "import e3nn_jax, jraph, ase, vesin" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/.whl/shim:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1

# the machine heads every stage's log (no file of its own: a device call brings back 8 files)
machine=$({ nvidia-smi 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import jax, flax, equijax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
} 2>&1)
echo "$machine"

stage() {  # stage NAME CAP_S ARGS...: one `equijax bench chgnet-train` under a timeout
  local name=$1 cap=$2; shift 2
  local left=$(( budget - ($(date +%s) - start) ))
  local limit=$(( cap < left ? cap : left ))
  if [ "$limit" -lt 30 ]; then echo "== $name: skipped, ${left}s of the budget left"; return; fi
  echo "== $name (at most ${limit}s): bench chgnet-train $* $extra"
  # shellcheck disable=SC2086
  { echo "$machine"
    timeout "$limit" python3 -c 'import sys; from equijax.cli import main; sys.exit(main())' \
      bench chgnet-train "$@" $extra --out "$out/$name.json"
  } 2>&1 | tee "$out/$name.log"
  echo "== $name: exit ${PIPESTATUS[0]} after $(( $(date +%s) - start ))s in all"
}

stage core 210 --forces conservative,direct --precision float32 --memory --steps 10
stage breakdown 210 --forces direct,conservative,direct-physical --precision default,bf16 \
  --breakdown --no-reference --steps 10
stage memory 120 --forces direct,conservative --remat --concat-messages --memory --no-reference \
  --steps 10
stage gates 90 --forces direct,conservative --unfused-gates --no-reference --steps 10
