#!/usr/bin/env bash
# GPU checks for the scale-out issue, in one command on a machine with CUDA GPUs:
#   bash tools/gpu_check.sh            (after `make install-dev`, or with edgecnn on PATH)
# 1. bench-train cnn_attn at 224 with the fast path off and on (bf16 autocast, channels_last, compile);
# 2. a short DDP run of the quickstart on every visible GPU, then QAT of it under DDP too;
# 3. the GPU reference row for the report: the run's eager model benched on CUDA.
# Rows go to runs/gpu_check/bench_train.json.
set -euo pipefail
EDGECNN=${EDGECNN:-edgecnn}
[ -x .venv/bin/edgecnn ] && EDGECNN=.venv/bin/edgecnn
out=runs/gpu_check
mkdir -p "$out"
rm -f "$out/bench_train.json"
ngpu=$(python3 -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || .venv/bin/python -c "import torch; print(torch.cuda.device_count())")
echo "GPUs visible: $ngpu"
[ "$ngpu" -lt 2 ] && echo "note: one GPU, so the DDP step below runs as a single process (NCCL refuses two ranks on one GPU)"
# The built-in dataset at 224 (no ImageNet-mini needed): bench-train measures speed, not accuracy.
synth=(data.source=synth data.root=null data.workers=4 data.train_per_class=64 data.val_per_class=8 data.num_classes=50)
common=(recipes/cnn_attn.yaml "${synth[@]}" train.device=cuda train.batch_size=128 --steps 30 --warmup 5 --json "$out/bench_train.json")
$EDGECNN bench-train "${common[@]}"
$EDGECNN bench-train "${common[@]}" train.amp=true train.channels_last=true
$EDGECNN bench-train "${common[@]}" train.amp=true train.channels_last=true train.compile=true
rm -rf "$out/ddp"
$EDGECNN train recipes/quickstart.yaml train.device=cuda data.on_device=true train.epochs=2 train.batch_size=64 \
  train.amp=true train.channels_last=true --nproc "$ngpu" --out "$out/ddp"
$EDGECNN eval "$out/ddp"
$EDGECNN qat "$out/ddp" --target openvino --epochs 1 --nproc "$ngpu" train.device=cuda
$EDGECNN bench --eager "$out/ddp" --device cuda --iters 200 --json "$out/bench_cuda.json"
