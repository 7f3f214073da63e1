#!/usr/bin/env bash
# Evaluate under Slurm: tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py ARGS...]
#   Same environment as tools/slurm_train.sh (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, PYTHON).
set -e
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py arguments...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON=${PYTHON:-python}
if [ "$GPUS_PER_NODE" -gt 0 ]; then
    GRES="--gres=gpu:${GPUS_PER_NODE}"
    PER_NODE=$GPUS_PER_NODE
else
    GRES=""
    PER_NODE=$GPUS
fi

PYTHONPATH="$HERE/..":$PYTHONPATH \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    ${GRES} \
    --ntasks=${GPUS} \
    --ntasks-per-node=${PER_NODE} \
    --cpus-per-task=${CPUS_PER_TASK} \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$HERE/test.py" "$CONFIG" "$CHECKPOINT" --launcher="slurm" "${@:5}"
