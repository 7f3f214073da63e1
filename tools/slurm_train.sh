#!/usr/bin/env bash
# Train under Slurm: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py ARGS...]
#   GPUS (total tasks, default 8), GPUS_PER_NODE (default 8; 0 on CPU-only nodes: no --gres),
#   CPUS_PER_TASK (default 5), SRUN_ARGS (extra srun arguments), PYTHON (interpreter).
set -e
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py arguments...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
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
    "$PYTHON" -u "$HERE/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher="slurm" "${@:5}"
