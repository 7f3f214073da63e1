#!/usr/bin/env bash
# Build the project environment in .venv/ (idempotent).
#
#   bash tools/setup_env.sh                     # what `make setup` runs
#   bash tools/setup_env.sh --print-mmcv-build  # print the mmcv variant, cache key and build
#                                               # command, build nothing (= MMHIRI_SETUP_DRY_RUN=1)
#   bash tools/setup_env.sh --build-mmcv-wheel  # only build the mmcv wheel into the cache (needs
#                                               # a set-up .venv), install nothing
#
# Every step is pinned (requirements/*.txt). The one slow step, building mmcv 2.1.0 with its
# compiled ops, is cached as a wheel outside the repository, keyed by the mmcv, torch and Python
# versions, the platform and the ops variant, so only a brand-new machine pays for it:
#   ${MMHIRI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmhiri}/wheels/mmcv-2.1.0-torch2.14.1-cp311-x86_64-cpu/
#   ...wheels/mmcv-2.1.0-torch2.14.1-cp311-x86_64-cu130-sm80_sm90/     (CUDA ops, see below)
# mmcv's ops variant (docs/install.md, "GPU machines"):
#   MMHIRI_MMCV_OPS=auto  (default) CUDA ops for the compute capabilities of the GPUs torch
#                         sees; CPU ops where it sees none
#   MMHIRI_MMCV_OPS=cpu   CPU ops, also on a GPU machine
#   MMHIRI_MMCV_OPS=cuda  CUDA ops; fails where there is neither a GPU nor MMHIRI_CUDA_ARCH
#   MMHIRI_CUDA_ARCH="8.0;9.0"  CUDA ops for these compute capabilities, also from a machine
#                         without a GPU (a cluster's login node)
#   CUDA_HOME             the CUDA toolkit for CUDA ops (default /usr/local/cuda)
#   MMHIRI_MMCV_BUILD_DIR build mmcv there and keep it (a failed build resumes where it stopped)
# A stamp in .venv/ records a hash of this script, the requirement files and the ops request
# above; a second run with nothing changed only checks the stamp.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY_BOOT="${PYTHON:-python3}"

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0

MODE=setup
PY_TAG=""  # torch_facts
[[ "${MMHIRI_SETUP_DRY_RUN:-0}" == 1 ]] && MODE=print
for arg in "$@"; do
    case "$arg" in
        --print-mmcv-build) MODE=print ;;
        --build-mmcv-wheel) MODE=wheel ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup_env.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

die() { echo "setup_env.sh: $*" >&2; exit 1; }
log() { echo "[setup $(date +%H:%M:%S)] $*"; }

# A GPU can only be visible to torch where the kernel exposes one (WSL2: /dev/dxg). Without
# such a device the GPU query below, a torch import, is skipped: CPU machines pay nothing.
gpu_devices_present() { compgen -G '/dev/nvidia[0-9]*' >/dev/null || [[ -e /dev/dxg ]]; }

# ---- mmcv's ops variant ---------------------------------------------------------------------
# Sets MMCV_VARIANT (cpu|cuda), MMCV_WHY, and for cuda CUDA_ARCH_LIST ("8.0;9.0"), CUDA_DIR,
# CUDA_VERSION_MM ("13.0"), CUDA_TAG ("cu130"), ARCH_TAG ("sm80_sm90"). $1: a python (with torch
# after set-up; the dry run before set-up may pass one without).
ARCH_FORMAT='compute capabilities MAJOR.MINOR separated by ";", e.g. MMHIRI_CUDA_ARCH="8.0;9.0" (a suffix "a" or "+PTX" is allowed: "9.0a", "9.0+PTX")'

normalise_arch_list() {  # $1: list as given; prints it sorted and deduplicated, fails if malformed
    local a out=() IFS=';'
    [[ "$1" == *[![:space:]]* ]] || return 1
    for a in $1; do
        a="${a//[[:space:]]/}"
        [[ "$a" =~ ^[0-9]{1,2}\.[0-9]a?(\+PTX)?$ ]] || return 1
        out+=("$a")
    done
    [[ "$1" != *';' ]] || return 1
    printf '%s\n' "${out[@]}" | sort -t. -k1,1n -k2,2 -u | paste -sd';'
}

detect_gpu_arch() {  # $1: python; prints "8.0;9.0" for the GPUs torch sees, nothing without one
    gpu_devices_present || return 0
    "$1" - <<'EOF' 2>/dev/null || true
import torch
if torch.cuda.is_available():
    # as torch.utils.cpp_extension does for an unset TORCH_CUDA_ARCH_LIST: every visible GPU,
    # clamped to the newest architecture this torch was built for
    sms = [int(a[3:]) for a in torch.cuda.get_arch_list() if a.startswith('sm_') and a[3:].isdigit()]
    caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    if sms:
        newest = max((s // 10, s % 10) for s in sms)
        caps = {min(c, newest) for c in caps}
    print(';'.join(f'{major}.{minor}' for major, minor in sorted(caps)))
EOF
}

resolve_mmcv_variant() {
    local py="$1" req="${MMHIRI_MMCV_OPS:-auto}" detected
    MMCV_VARIANT=cpu CUDA_ARCH_LIST="" CUDA_DIR="" CUDA_VERSION_MM="" CUDA_TAG="" ARCH_TAG=""
    case "$req" in
        auto|cpu|cuda) ;;
        *) die "MMHIRI_MMCV_OPS='$req': expected auto (default), cpu or cuda" ;;
    esac
    if [[ "$req" == cpu ]]; then
        MMCV_WHY="MMHIRI_MMCV_OPS=cpu${MMHIRI_CUDA_ARCH:+; MMHIRI_CUDA_ARCH ignored}"
        return 0
    elif [[ -n "${MMHIRI_CUDA_ARCH:-}" ]]; then
        CUDA_ARCH_LIST="$(normalise_arch_list "$MMHIRI_CUDA_ARCH")" \
            || die "MMHIRI_CUDA_ARCH='$MMHIRI_CUDA_ARCH' is malformed: expected $ARCH_FORMAT"
        MMCV_WHY="MMHIRI_CUDA_ARCH='$MMHIRI_CUDA_ARCH'"
    else
        detected="$(detect_gpu_arch "$py")"
        if [[ -n "$detected" ]]; then
            CUDA_ARCH_LIST="$detected"
            MMCV_WHY="the GPUs torch sees (compute capability $detected)"
        elif [[ "$req" == cuda ]]; then
            die "MMHIRI_MMCV_OPS=cuda but torch sees no GPU here: set MMHIRI_CUDA_ARCH ($ARCH_FORMAT)"
        elif ! gpu_devices_present; then
            MMCV_WHY="no GPU on this machine"
            return 0
        elif [[ "$MODE" == print ]] && ! "$py" -c 'import torch' 2>/dev/null; then
            MMCV_WHY="no torch yet to ask about the GPU: the set-up asks it once torch is installed (MMHIRI_CUDA_ARCH chooses now)"
            return 0
        else
            MMCV_WHY="torch sees no GPU"
            return 0
        fi
    fi
    MMCV_VARIANT=cuda
    if [[ -n "${CUDA_HOME:-}" ]]; then
        [[ -x "$CUDA_HOME/bin/nvcc" ]] || die "CUDA_HOME='$CUDA_HOME' has no bin/nvcc (CUDA ops need the CUDA toolkit)"
        CUDA_DIR="$CUDA_HOME"
    elif [[ -x /usr/local/cuda/bin/nvcc ]]; then
        CUDA_DIR=/usr/local/cuda
    else
        die "CUDA ops need the CUDA toolkit: no /usr/local/cuda/bin/nvcc; set CUDA_HOME (or MMHIRI_MMCV_OPS=cpu)"
    fi
    CUDA_VERSION_MM="$("$CUDA_DIR/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p' | head -n1)"
    [[ -n "$CUDA_VERSION_MM" ]] || die "cannot read the CUDA version from '$CUDA_DIR/bin/nvcc --version'"
    CUDA_TAG="cu${CUDA_VERSION_MM/./}"
    # nvcc names what it can compile for (CUDA 13 dropped everything below 7.5)
    local supported a num tags=()
    supported=" $("$CUDA_DIR/bin/nvcc" --list-gpu-arch 2>/dev/null | tr '\n' ' ') "
    for a in ${CUDA_ARCH_LIST//;/ }; do
        num="${a%+PTX}"; num="${num/./}"
        [[ "$supported" == *" compute_${num%a} "* ]] \
            || die "compute capability $a: nvcc $CUDA_VERSION_MM ($CUDA_DIR) cannot compile for it; it knows $(echo $supported | sed 's/compute_\([0-9]*\)\([0-9]\)/\1.\2/g')"
        if [[ "$a" == *+PTX ]]; then tags+=("sm$num+ptx"); else tags+=("sm$num"); fi
    done
    ARCH_TAG="$(IFS=_; echo "${tags[*]}")"
    # torch's extension builder refuses an nvcc of another major version than torch's CUDA
    torch_facts "$py"
    if [[ -n "$TORCH_CUDA" ]]; then
        [[ "$TORCH_CUDA" != none ]] || die "torch $TORCH_TAG is a CPU-only build: no CUDA ops (MMHIRI_MMCV_OPS=cpu)"
        [[ "${TORCH_CUDA%%.*}" == "${CUDA_VERSION_MM%%.*}" ]] \
            || die "torch is built with CUDA $TORCH_CUDA but $CUDA_DIR/bin/nvcc is CUDA $CUDA_VERSION_MM: set CUDA_HOME to a CUDA ${TORCH_CUDA%%.*}.x toolkit"
    fi
}

torch_facts() {  # $1: python, or "pins" (dry run before set-up); sets PY_TAG TORCH_TAG TORCH_CUDA (one torch import, once)
    [[ -z "${PY_TAG:-}" ]] || return 0
    local facts code='import sys, torch; print(f"cp{sys.version_info[0]}{sys.version_info[1]}", torch.__version__.split("+")[0], torch.version.cuda or "none")'
    # The dry run reads torch's version and CUDA version from torch/version.py without importing it
    # (2.7 s here -> 0.04 s); tests/test_environment.py checks the key against torch's own.
    [[ "$MODE" != print ]] || code='import importlib.util, os, sys
ns = {}
exec(open(os.path.join(os.path.dirname(importlib.util.find_spec("torch").origin), "version.py")).read(), ns)
print(f"cp{sys.version_info[0]}{sys.version_info[1]}", ns["__version__"].split("+")[0], ns["cuda"] or "none")'
    if [[ "$1" != pins ]] && facts="$("$1" -c "$code" 2>/dev/null)"; then
        read -r PY_TAG TORCH_TAG TORCH_CUDA <<< "$facts"
        return 0
    fi
    [[ "$MODE" == print ]] || die "torch does not import in $1"
    # dry run before set-up: the interpreter that would make .venv and the pinned torch
    PY_TAG="$("$PY_BOOT" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
    TORCH_TAG="$TORCH_VERSION" TORCH_CUDA=""
}

mmcv_cache_dir() {  # $1: python with torch, or "pins" (dry run before set-up: the pinned torch)
    local suffix=cpu
    torch_facts "$1"
    [[ "$MMCV_VARIANT" == cpu ]] || suffix="$CUDA_TAG-$ARCH_TAG"
    local root="${MMHIRI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmhiri}"
    echo "$root/wheels/mmcv-$MMCV_VERSION-torch$TORCH_TAG-$PY_TAG-$(uname -m)-$suffix"
}

mmcv_build_env() {  # sets BUILD_ENV
    # The GPU is hidden in both variants: the CUDA variant's architectures are explicit, so the
    # build is the same on a GPU node and on a login node.
    BUILD_ENV=(CUDA_VISIBLE_DEVICES= MMCV_WITH_OPS=1)
    if [[ "$MMCV_VARIANT" == cpu ]]; then
        BUILD_ENV+=(FORCE_CUDA=0)
    else
        # torch ships the CUDA headers its own headers include (cusparse.h, cublas_v2.h, ...) in
        # nvidia/cuXX/include; a CUDA toolkit without the math libraries lacks them. As
        # CPLUS_INCLUDE_PATH they are searched last (g++ and nvcc's host preprocessing), after
        # the toolkit's own headers.
        local site
        if [[ -x "$VENV/bin/python" ]]; then
            site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        else  # dry run before set-up
            site="$VENV/lib/$("$PY_BOOT" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')/site-packages"
        fi
        local inc="$site/nvidia/cu${CUDA_VERSION_MM%%.*}/include"
        BUILD_ENV+=(FORCE_CUDA=1 "TORCH_CUDA_ARCH_LIST=$CUDA_ARCH_LIST" "CUDA_HOME=$CUDA_DIR"
                    "CPLUS_INCLUDE_PATH=$inc${CPLUS_INCLUDE_PATH:+:$CPLUS_INCLUDE_PATH}")
    fi
    BUILD_ENV+=("MAX_JOBS=${MAX_JOBS:-$(nproc)}")
}

# mmcv 2.1.0's sources as this stack needs them. Each patch says why; MMCV_PATCHES lists them
# for the dry run. Idempotent (a kept MMHIRI_MMCV_BUILD_DIR is patched again).
MMCV_PATCHES=("setup.py: -std=c++17 -> -std=c++20 (cxx and nvcc): torch >= 2.6 headers #error under C++17")
patch_mmcv_sources() {  # $1: the unpacked sdist
    local src="$1"
    # torch >= 2.6 headers require C++20 (they #error under C++17); mmcv 2.1.0 hard-codes c++17.
    if grep -q -- "-std=c++17" "$src/setup.py"; then
        sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    else
        grep -q -- "-std=c++20" "$src/setup.py" || die "unexpected mmcv setup.py: no -std=c++17"
    fi
}

show() {  # prints its arguments as one shell-quoted line
    local a out=()
    for a in "$@"; do
        if [[ "$a" =~ ^[A-Za-z0-9_./:=+,@%-]*$ ]]; then out+=("$a"); else out+=("'${a//\'/\'\\\'\'}'"); fi
    done
    echo "${out[*]}"
}

PIP_WHEEL_ARGS=(wheel -q --no-deps --no-build-isolation --no-cache-dir)

if [[ "$MODE" == print ]]; then
    # Build nothing, write nothing: the variant, the cache key and the exact build.
    if [[ -x "$VENV/bin/python" ]]; then PY="$VENV/bin/python"; tags="$PY"; else PY="$PY_BOOT"; tags=pins; fi
    resolve_mmcv_variant "$PY"
    WHEEL_DIR="$(mmcv_cache_dir "$tags")"
    mmcv_build_env
    echo "mmcv ops: $MMCV_VARIANT ($MMCV_WHY)"
    [[ "$MMCV_VARIANT" == cpu ]] || echo "cuda: $CUDA_VERSION_MM from $CUDA_DIR, architectures $CUDA_ARCH_LIST"
    echo "cache key: $(basename "$WHEEL_DIR")"
    echo "cache dir: $WHEEL_DIR"
    cached="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
    echo "cached wheel: ${cached:-none (the set-up would build it)}"
    for p in "${MMCV_PATCHES[@]}"; do echo "source patch: $p"; done
    echo "build env: $(show "${BUILD_ENV[@]}")"
    echo "build command: $(show cd "<sdist>/mmcv-$MMCV_VERSION") && $(show env "${BUILD_ENV[@]}" \
        "$PY" -m pip --disable-pip-version-check "${PIP_WHEEL_ARGS[@]}" -w "<build>/dist" .)"
    [[ "$tags" != pins ]] || echo "note: no .venv yet: key from the pinned torch $TORCH_VERSION and $PY_BOOT"
    exit 0
fi

STAMP="$VENV/.mmhiri-setup-stamp"
want_stamp="$( { cat tools/setup_env.sh requirements/*.txt setup.py
                 echo "mmcv ops: ${MMHIRI_MMCV_OPS:-auto} arch=${MMHIRI_CUDA_ARCH:-}" \
                      "gpu-device=$(gpu_devices_present && echo yes || echo no)"; } \
               | sha256sum | cut -d' ' -f1)"
if [[ "$MODE" == setup && -f "$STAMP" && "$(cat "$STAMP")" == "$want_stamp" && -x "$VENV/bin/python" ]]; then
    touch "$STAMP"
    echo "[setup] .venv is up to date ($VENV)"
    exit 0
fi

t0=$(date +%s)

if [[ "$MODE" == wheel ]]; then
    "$VENV/bin/python" -c 'import torch, setuptools, ninja' 2>/dev/null \
        || die "--build-mmcv-wheel needs the set-up .venv (torch and the build tools): run make setup first"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtualenv $VENV"
    "$PY_BOOT" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
export PIP_NO_WARN_SCRIPT_LOCATION=1

if [[ "$MODE" == setup ]]; then
    # The constraints written at the end (below) would pin setuptools away from the build pin:
    # the set-up itself runs without them.
    rm -f "$VENV/pip.conf"

    "${PIP[@]}" install -q -U "pip==25.3"
    log "torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION (CUDA builds; they run on CPU)"
    "${PIP[@]}" install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

    log "build tools"
    # After torch, which pulls setuptools>=77: mmcv's setup.py and mmengine's `pkg::` config lookup
    # import pkg_resources, gone from setuptools>=82, so pin setuptools<70 back. torch runs with it;
    # pip prints a dependency-conflict line for it, harmless.
    "${PIP[@]}" install -q -r requirements/build.txt
fi

resolve_mmcv_variant "$PY"
[[ "$MMCV_VARIANT" == cpu ]] || log "mmcv ops: CUDA $CUDA_VERSION_MM for $CUDA_ARCH_LIST ($MMCV_WHY)"
MMCV_MARKER="$VENV/.mmhiri-mmcv-ops"  # the cache key of the installed mmcv wheel

have_mmcv_ops() {  # the installed mmcv 2.1.0 has working ops of the wanted variant
    # CUDA ops: also built for the wanted architectures (recorded at install)
    [[ "$MMCV_VARIANT" == cpu || "$(cat "$MMCV_MARKER" 2>/dev/null)" == "$(basename "$WHEEL_DIR")" ]] || return 1
    MMHIRI_WANT_CUDA="$CUDA_VERSION_MM" "$PY" - <<'EOF' 2>/dev/null
import os
import mmcv, torch
from mmcv.ops import get_compiling_cuda_version, nms
assert mmcv.__version__ == "2.1.0"
assert get_compiling_cuda_version() == (os.environ["MMHIRI_WANT_CUDA"] or "not available")
b = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]]); s = torch.tensor([0.9, 0.8])
nms(b, s, 0.5)
EOF
}

build_mmcv_wheel() {  # $1: cache dir; builds the wheel and moves it there atomically
    local tb; tb=$(date +%s)
    if [[ "$MMCV_VARIANT" == cpu ]]; then
        log "building mmcv $MMCV_VERSION with ops from source (~15-20 min on 2 cores; cached in $1)"
    else
        log "building mmcv $MMCV_VERSION with CUDA ops for $CUDA_ARCH_LIST from source (2.5 h for one architecture on 2 busy cores, docs/install.md; cached in $1)"
    fi
    if [[ -n "${MMHIRI_MMCV_BUILD_DIR:-}" ]]; then
        BUILD="$MMHIRI_MMCV_BUILD_DIR"  # kept: ninja resumes a failed build where it stopped
        mkdir -p "$BUILD"
    else
        BUILD="$(mktemp -d)"
        trap 'rm -rf "$BUILD"' EXIT
    fi
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    if [[ ! -f "$SRC/setup.py" ]]; then
        # No wheel is published for this torch: take the sdist and build it against the venv's torch.
        "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation \
            -d "$BUILD" "mmcv==$MMCV_VERSION"
        tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    fi
    patch_mmcv_sources "$SRC"
    mmcv_build_env
    rm -rf "$BUILD/dist"
    (cd "$SRC" && env "${BUILD_ENV[@]}" "${PIP[@]}" "${PIP_WHEEL_ARGS[@]}" -w "$BUILD/dist" .)
    local built
    built="$(ls "$BUILD"/dist/mmcv-"$MMCV_VERSION"-*.whl)"
    cp "$built" "$1/.$(basename "$built").partial"
    mv "$1/.$(basename "$built").partial" "$1/$(basename "$built")"
    log "mmcv wheel built in $(( $(date +%s) - tb )) s: $1/$(basename "$built")"
}

install_mmcv_wheel() {
    # explicit file + --no-cache-dir: pip's own cache must not substitute a wheel built
    # against another torch
    "${PIP[@]}" install -q --no-deps --no-cache-dir --force-reinstall "$1"
    "${PIP[@]}" install -q -r requirements/mmcv_runtime.txt
    basename "$(dirname "$1")" > "$MMCV_MARKER"
}

if [[ "$MODE" == wheel ]]; then
    WHEEL_DIR="$(mmcv_cache_dir "$PY")"
    mkdir -p "$WHEEL_DIR"
    wheel="$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
    [[ -n "$wheel" ]] || build_mmcv_wheel "$WHEEL_DIR"
    log "mmcv wheel: $(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl | head -n1) (not installed)"
    exit 0
fi

WHEEL_DIR=""
if [[ "$MMCV_VARIANT" != cpu ]]; then WHEEL_DIR="$(mmcv_cache_dir "$PY")"; fi
if have_mmcv_ops; then
    log "mmcv $MMCV_VERSION with ops already installed"
else
    WHEEL_DIR="$(mmcv_cache_dir "$PY")"
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
if [[ "$MMCV_VARIANT" == cuda ]]; then
    MMHIRI_CUDA_ARCH_LIST="$CUDA_ARCH_LIST" "$PY" - <<'EOF'
# mmcv's CUDA ops on CUDA tensors, against its CPU ops (NMS, RoIAlign) and the focal loss's
# formula (mmcv has no CPU sigmoid_focal_loss)
import os
import sys

import torch
from mmcv.ops import RoIAlign, get_compiling_cuda_version, nms, sigmoid_focal_loss

built = os.environ['MMHIRI_CUDA_ARCH_LIST']
print(f'mmcv ops: CUDA {get_compiling_cuda_version()} for {built}')
if not torch.cuda.is_available():
    print('no GPU visible here: the CUDA ops were not run (the set-up runs them where torch sees a GPU)')
    sys.exit(0)
torch.manual_seed(0)
cap = '.'.join(map(str, torch.cuda.get_device_capability()))
try:
    xy = torch.rand(200, 2) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(200, 2) * 20], 1)
    scores = torch.rand(200)
    _, keep = nms(boxes, scores, 0.5)
    _, keep_cuda = nms(boxes.cuda(), scores.cuda(), 0.5)
    assert keep_cuda.is_cuda and torch.equal(keep_cuda.cpu(), keep), 'nms: CUDA != CPU'

    feat = torch.rand(2, 8, 32, 32)
    rois = torch.tensor([[0, 1.5, 2., 20., 25.], [1, 4., 4., 30., 12.], [0, 0., 0., 31., 31.]])
    align = RoIAlign((7, 7), spatial_scale=1.0, sampling_ratio=2)
    feat_cuda = feat.cuda().requires_grad_()
    out_cuda = align(feat_cuda, rois.cuda())
    out_cuda.sum().backward()
    assert torch.allclose(out_cuda.detach().cpu(), align(feat, rois), atol=1e-5), 'RoIAlign: CUDA != CPU'
    assert feat_cuda.grad is not None and feat_cuda.grad.abs().sum() > 0, 'RoIAlign: no gradient'

    logits = torch.randn(64, 5, device='cuda', requires_grad=True)
    labels = torch.randint(0, 6, (64,), device='cuda')  # 5 = background
    loss = sigmoid_focal_loss(logits, labels, 2.0, 0.25, None, 'mean')
    loss.backward()
    x = logits.detach().clone().requires_grad_()
    p, t = x.sigmoid(), torch.nn.functional.one_hot(labels, 6)[:, :5].float()
    ref = -(0.25 * t * (1 - p) ** 2 * torch.log(p.clamp_min(1e-38))
            + 0.75 * (1 - t) * p ** 2 * torch.log((1 - p).clamp_min(1e-38))).sum() / x.shape[0]
    ref.backward()
    assert torch.allclose(loss, ref, rtol=1e-4, atol=1e-6), f'sigmoid_focal_loss {loss} != {ref}'
    assert torch.allclose(logits.grad, x.grad, rtol=1e-3, atol=1e-6), 'sigmoid_focal_loss: gradient'
except (RuntimeError, AssertionError) as e:
    sys.exit(f'mmcv CUDA ops fail on {torch.cuda.get_device_name()} (compute capability {cap}; '
             f'built for {built}): {e}\n(a missing architecture: MMHIRI_CUDA_ARCH="{cap}" or unset it)')
print(f'mmcv CUDA ops (nms, RoIAlign, sigmoid_focal_loss) match on {torch.cuda.get_device_name()} '
      f'(compute capability {cap})')
EOF
fi
echo "$want_stamp" > "$STAMP"
log "done in $(( $(date +%s) - t0 )) s"
