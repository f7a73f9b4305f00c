#!/usr/bin/env bash
# BoxMOT 25 next to dcac on a CPU machine: BoxMOT's ReID runtime and trackers, and nothing that replaces dcac's
# torch. A plain `pip install boxmot` pulls a CUDA torch and torchvision (transformers imports a torchvision
# that is present, and a CUDA-built one fails to import), so BoxMOT comes without its dependencies, and only
# what its ONNX ReID backend and trackers import follows. onnxruntime is pinned to the version BoxMOT's ONNX
# backend checks for: with any other, BoxMOT pip-installs that one itself on the first ONNX load.
set -euo pipefail
pip install --no-deps boxmot==25.0.0
pip install "lapx>=0.5.5,<1" "opencv-python-headless>=4.7,<5" "platformdirs>=4.3,<5" "rich>=15" "scipy>=1.11" onnxruntime==1.24.3
