#!/usr/bin/env bash
# Evaluate under Slurm: tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py ARGS...]
#   Same environment as tools/slurm_train.sh (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, PYTHON).
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py arguments...]" >&2
    exit 2
fi
exec "$(dirname "$0")/_srun.sh" "$1" "$2" test.py "$3" "$4" "${@:5}"
