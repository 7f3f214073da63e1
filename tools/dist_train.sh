#!/usr/bin/env bash
# Train on several processes: tools/dist_train.sh CONFIG GPUS [tools/train.py ARGS...]
#   GPUS: processes on this node (one per GPU; on a machine without GPUs, CPU processes that
#   talk over gloo, chosen automatically). Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT.
#   PYTHON: the interpreter (default: the repository's .venv if there is one, else python).
set -e
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [tools/train.py arguments...]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ -z "$PYTHON" ]; then
    if [ -x "$HERE/../.venv/bin/python" ]; then PYTHON="$HERE/../.venv/bin/python"; else PYTHON=python; fi
fi

PYTHONPATH="$HERE/..":$PYTHONPATH \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS \
    --master_port=$PORT \
    "$HERE/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
