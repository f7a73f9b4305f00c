#!/usr/bin/env bash
# The GPU measurements of the training-speed work, in one command, for a GPU machine without network access:
# the official code's step, dcac v0.1's default step and the new default (images/s, TFLOP/s, MFU, peak memory),
# the default step augmenting on the device, extraction, and the loader per worker count on that machine's CPUs.
#
#   bash benchmarks/gpu_session.sh [--tiny] [PARTS]
#
# --tiny: tiny models, about a minute on two CPU cores (a dry run of the whole script, also without a GPU).
# PARTS: a comma list of step, extract, loader (default: all three). At full size the step part runs five
# variants, three of them compiled (up to 240 s each), so where one command may run only 10 minutes, run
# "step" and "extract,loader" as two commands.
# STEP_VARIANTS (a comma list of train_step.py variants) replaces the step part's variants where the machine's time
# is short, e.g. STEP_VARIANTS=dcac+per_step_reads,dcac for the official code, v0.1 and the default only.
# Results go to $OUT (default benchmarks/results/gpu_session), one JSON per benchmark, and the log to $OUT/log.
#
# What the machine needs besides PyTorch, brought along as folders of the checkout that .gitignore ignores:
#   .official/DCAC   a clone of https://github.com/RikoLi/DCAC (the official code; read by official_step.py only)
#   .whl/            wheels of what the machine lacks, e.g. for a Python 3.12 machine that has torch,
#                    transformers, peft and accelerate but not diffusers or omegaconf:
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux2014_x86_64 -d .whl diffusers omegaconf loralib einops
#   (all pure Python; check each wheel's Requires-Dist against the machine's packages)
# Every wheel in .whl/ is installed into /tmp/site (first on PYTHONPATH); dcac itself is read from src/.
# $PYTHON (default python3) runs everything.
set -euo pipefail
cd "$(dirname "$0")/.."
size=()
if [[ "${1:-}" == "--tiny" ]]; then
    size=(--tiny)
    shift
fi
parts=",${1:-step,extract,loader},"
out="${OUT:-benchmarks/results/gpu_session}"
mkdir -p "$out"
exec > >(tee -a "$out/log") 2>&1

python="${PYTHON:-python3}"  # the interpreter that has PyTorch
site=/tmp/site
if compgen -G ".whl/*.whl" > /dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
fi
export PYTHONPATH="$site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$python" -c "import torch, diffusers, transformers, peft, accelerate, omegaconf, dcac; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
echo "cpus: $(nproc)"

official=()
if [[ -d .official/DCAC ]]; then
    official=(--official .official/DCAC)
else
    echo "no .official/DCAC: the official row is left out"
fi
variants=reference,dcac+per_step_reads,dcac,dcac+device_augment
[[ ${#size[@]} -gt 0 ]] && variants=reference,dcac,dcac+device_augment  # v0.1's row is the default's at tiny size
variants="${STEP_VARIANTS:-$variants}"

# Each benchmark writes its JSON as it goes; one failing does not stop the next.
status=0
if [[ $parts == *,step,* ]]; then
    "$python" benchmarks/train_step.py "${size[@]}" "${official[@]}" --variants "$variants" --variant-timeout 240 \
        --out "$out/train_step.json" || status=1
fi
if [[ $parts == *,extract,* ]]; then
    "$python" benchmarks/extract.py "${size[@]}" --out "$out/extract.json" || status=1
fi
if [[ $parts == *,loader,* ]]; then
    workers=0,4,8,16
    [[ ${#size[@]} -gt 0 ]] && workers=0,1
    "$python" benchmarks/data_loading.py "${size[@]}" --workers "$workers" --out "$out/data_loading.json" || status=1
fi
exit $status
