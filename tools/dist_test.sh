#!/usr/bin/env bash
# Evaluate on several processes: tools/dist_test.sh CONFIG CHECKPOINT GPUS [tools/test.py ARGS...]
#   Same environment as tools/dist_train.sh (NNODES, NODE_RANK, MASTER_ADDR, PORT, PYTHON).
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [tools/test.py arguments...]" >&2
    exit 2
fi
exec "$(dirname "$0")/_torchrun.sh" "$3" test.py "$1" "$2" --launcher pytorch "${@:4}"
