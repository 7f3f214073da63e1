#!/usr/bin/env bash
# Train on several processes: tools/dist_train.sh CONFIG GPUS [tools/train.py ARGS...]
#   GPUS: processes on this node (one per GPU; on a machine without GPUs, CPU processes that
#   talk over gloo, chosen automatically). Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT.
#   PYTHON: the interpreter (default: the repository's .venv if there is one, else python).
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [tools/train.py arguments...]" >&2
    exit 2
fi
exec "$(dirname "$0")/_torchrun.sh" "$2" train.py "$1" --launcher pytorch "${@:3}"
