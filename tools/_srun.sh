#!/usr/bin/env bash
# Shared by slurm_train.sh and slurm_test.sh: _srun.sh PARTITION JOB_NAME SCRIPT [ARGS...] runs
# tools/SCRIPT as Slurm tasks (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, PYTHON).
set -e
PARTITION=$1
JOB_NAME=$2
SCRIPT=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON=${PYTHON:-python}
if [ "$GPUS_PER_NODE" -gt 0 ]; then
    GRES="--gres=gpu:${GPUS_PER_NODE}"
    PER_NODE=$GPUS_PER_NODE
else  # CPU-only nodes
    GRES=""
    PER_NODE=$GPUS
fi

PYTHONPATH="$HERE/..":$PYTHONPATH \
exec srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    ${GRES} \
    --ntasks=${GPUS} \
    --ntasks-per-node=${PER_NODE} \
    --cpus-per-task=${CPUS_PER_TASK} \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$HERE/$SCRIPT" "${@:4}" --launcher=slurm
