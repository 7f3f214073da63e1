#!/usr/bin/env bash
# Train under Slurm: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py ARGS...]
#   GPUS (total tasks, default 8), GPUS_PER_NODE (default 8; 0 on CPU-only nodes: no --gres),
#   CPUS_PER_TASK (default 5), SRUN_ARGS (extra srun arguments), PYTHON (interpreter).
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py arguments...]" >&2
    exit 2
fi
exec "$(dirname "$0")/_srun.sh" "$1" "$2" train.py "$3" --work-dir="$4" "${@:5}"
