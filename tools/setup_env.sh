#!/usr/bin/env bash
# Build the project environment in .venv/ (idempotent).
#
#   bash tools/setup_env.sh          # what `make setup` runs
#
# Every step is pinned (requirements/*.txt). The one slow step, building mmcv 2.1.0 with its
# compiled ops, is cached as a wheel outside the repository, keyed by the mmcv, torch and Python
# versions and the platform, so only a brand-new machine pays for it:
#   ${MMHIRI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmhiri}/wheels/mmcv-2.1.0-torch2.14.1-cp311-x86_64-cpu/
# A stamp in .venv/ records a hash of this script and the requirement files; a second run with
# nothing changed only checks the stamp.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY_BOOT="${PYTHON:-python3}"

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0

STAMP="$VENV/.mmhiri-setup-stamp"
want_stamp="$(cat tools/setup_env.sh requirements/*.txt setup.py | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" && -x "$VENV/bin/python" ]]; then
    touch "$STAMP"
    echo "[setup] .venv is up to date ($VENV)"
    exit 0
fi

log() { echo "[setup $(date +%H:%M:%S)] $*"; }
t0=$(date +%s)

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtualenv $VENV"
    "$PY_BOOT" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
# The constraints written at the end (below) would pin setuptools away from the build pin:
# the set-up itself runs without them.
rm -f "$VENV/pip.conf"
export PIP_NO_WARN_SCRIPT_LOCATION=1

"${PIP[@]}" install -q -U "pip==25.3"
log "torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION (CUDA builds; they run on CPU)"
"${PIP[@]}" install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

log "build tools"
# After torch, which pulls setuptools>=77: mmcv's setup.py and mmengine's `pkg::` config lookup
# import pkg_resources, gone from setuptools>=82, so pin setuptools<70 back. torch runs with it;
# pip prints a dependency-conflict line for it, harmless.
"${PIP[@]}" install -q -r requirements/build.txt

have_mmcv_ops() {
    "$PY" - <<'EOF' 2>/dev/null
import mmcv, torch
from mmcv.ops import nms
assert mmcv.__version__ == "2.1.0"
b = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]]); s = torch.tensor([0.9, 0.8])
nms(b, s, 0.5)
EOF
}

build_mmcv_wheel() {  # $1: cache dir; builds the wheel and moves it there atomically
    log "building mmcv $MMCV_VERSION with ops from source (~15-20 min on 2 cores; cached in $1)"
    BUILD="$(mktemp -d)"
    trap 'rm -rf "$BUILD"' EXIT
    # No wheel is published for this torch: take the sdist and build it against the venv's torch.
    "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation \
        -d "$BUILD" "mmcv==$MMCV_VERSION"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch >= 2.6 headers require C++20 (they #error under C++17); mmcv 2.1.0 hard-codes c++17.
    grep -q -- "-std=c++17" "$SRC/setup.py" || { echo "unexpected mmcv setup.py: no -std=c++17" >&2; exit 1; }
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    # CPU ops only, also on a machine with a GPU (the cache key says cpu): hide any GPU.
    (cd "$SRC" && CUDA_VISIBLE_DEVICES= MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "${PIP[@]}" wheel -q --no-deps --no-build-isolation --no-cache-dir -w "$BUILD/dist" .)
    local built
    built="$(ls "$BUILD"/dist/mmcv-"$MMCV_VERSION"-*.whl)"
    cp "$built" "$1/.$(basename "$built").partial"
    mv "$1/.$(basename "$built").partial" "$1/$(basename "$built")"
}

install_mmcv_wheel() {
    # explicit file + --no-cache-dir: pip's own cache must not substitute a wheel built
    # against another torch
    "${PIP[@]}" install -q --no-deps --no-cache-dir --force-reinstall "$1"
    "${PIP[@]}" install -q -r requirements/mmcv_runtime.txt
}

if have_mmcv_ops; then
    log "mmcv $MMCV_VERSION with ops already installed"
else
    py_tag="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
    torch_tag="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
    CACHE_ROOT="${MMHIRI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmhiri}"
    WHEEL_DIR="$CACHE_ROOT/wheels/mmcv-$MMCV_VERSION-torch$torch_tag-$py_tag-$(uname -m)-cpu"
    mkdir -p "$WHEEL_DIR"
    wheel="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
    if [[ -n "$wheel" ]]; then
        log "using cached mmcv wheel $wheel"
        install_mmcv_wheel "$wheel"
        if ! have_mmcv_ops; then
            log "cached wheel does not work here: removing it and rebuilding"
            rm -f "$wheel"
            wheel=""
        fi
    fi
    if [[ -z "$wheel" ]]; then
        build_mmcv_wheel "$WHEEL_DIR"
        install_mmcv_wheel "$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)"
        have_mmcv_ops || { echo "mmcv installed but mmcv.ops does not work" >&2; exit 1; }
    fi
fi

log "OpenMMLab frameworks"
"${PIP[@]}" install -q -r requirements/runtime.txt
# mmpose 1.3.2 pins chumpy, which does not build: install it without deps, then its real deps.
"${PIP[@]}" install -q --no-deps "mmpose==1.3.2"
# The xtcocotools wheel is compiled against numpy 1.x ("numpy.dtype size changed" on numpy 2):
# build it from source against the installed numpy.
if ! "$PY" -c "import xtcocotools.coco" 2>/dev/null; then
    "${PIP[@]}" install -q --no-build-isolation --no-binary xtcocotools --no-cache-dir "xtcocotools==1.14.3"
fi
"${PIP[@]}" install -q -r requirements/tests.txt
log "ONNX export extra (requirements/deploy.txt)"
"${PIP[@]}" install -q -r requirements/deploy.txt

log "mmhiri (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .

log "runtime setuptools and the environment's pip constraints"
# The builds above are done: move setuptools into torch's declared range (>=77.0.3) while it
# still has pkg_resources (<82), so that no later `pip install X` sees a conflict to "fix".
"${PIP[@]}" install -q -r requirements/runtime_setuptools.txt
# Every later pip call in this venv honours requirements/constraints.txt (pip reads
# sys.prefix/pip.conf); without it, `pip install timm` moved setuptools and torch.
printf '[global]\nconstraint = %s\n' "$ROOT/requirements/constraints.txt" > "$VENV/pip.conf"

log "check"
"$PY" - <<'EOF'
import mmcv, mmdet, mmseg, mmpretrain, mmpose, mmengine, torch, torchvision
import pkg_resources  # noqa: F401  (mmengine's pkg:: config lookup)
from mmcv.ops import nms, RoIAlign, sigmoid_focal_loss  # noqa: F401
import mmhiri  # noqa: F401
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, mmengine {mmengine.__version__}, "
      f"mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, "
      f"mmpretrain {mmpretrain.__version__}, mmpose {mmpose.__version__}")
EOF
echo "$want_stamp" > "$STAMP"
log "done in $(( $(date +%s) - t0 )) s"
