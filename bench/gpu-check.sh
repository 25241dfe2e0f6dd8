#!/usr/bin/env bash
# The GPU checks the project still owes: none of the sessions that built the CUDA / WebGPU paths had a GPU. One
# command on a machine with an NVIDIA GPU, after `npx dino setup cuda` and with the CUDA 13 libraries on
# LD_LIBRARY_PATH (README "GPU"); for WebGPU in Node, a Vulkan driver (VK_DRIVER_FILES). Each figure is one JSON
# line (`{"figure": ...}`; vit-small-step prints its own); a failing check says so and the next one still runs.
# Record the figures in bench/RESULTS.md.
#
#   bash bench/gpu-check.sh [OUT_DIR]        # NODE=/path/to/node to use another node binary
set -uo pipefail
cd "$(dirname "$0")/.."
NODE=${NODE:-node}
OUT=${1:-/tmp/dino-gpu-check}
rm -rf "$OUT" && mkdir -p "$OUT"
status=0
check() { # NAME CMD...: runs CMD, keeps its output in OUT/NAME.log
  local name=$1; shift
  echo "== $name: $*"
  if "$@" >"$OUT/$name.log" 2>&1; then tail -n 3 "$OUT/$name.log"; else echo "FAILED (rc $?): see $OUT/$name.log"; tail -n 15 "$OUT/$name.log"; status=1; fi
}
# figure RUN_DIR NAME: one JSON line per figure from a run's metrics.jsonl: its losses, and the median step time and
# images/s over the steps after the first 8 (compile and warm-up excluded).
figure() { "$NODE" -e '
  const fs = require("fs"); const m = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
  const t = m.length > 8 ? m.slice(8) : m; const med = (k) => t.map((x) => x[k]).sort((a, b) => a - b)[t.length >> 1];
  console.log(JSON.stringify({ figure: process.argv[2], steps: m.length, losses: m.map((x) => x.loss), median_step_ms: med("step_ms"),
    images_per_s: med("images_per_s"), ...(m[0].loss_scale !== undefined ? { loss_scale: m.at(-1).loss_scale, skipped: m.filter((x) => x.skipped).length } : {}) }));' \
  "$1/metrics.jsonl" "$2"; }

# 1. Which execution providers start, and why not.
check doctor "$NODE" bin/dino.mjs doctor

# 2. Correctness: the same 3 steps of fmnist-tiny6 (batch 8) on each EP. CUDA runs them as one ONNX Loop (K = 3:
#    --ep cuda defaults to several steps per run); WebGPU keeps the state on the device between steps.
for ep in cpu cuda webgpu; do
  check "parity-$ep" "$NODE" bin/dino.mjs train --preset fmnist-tiny6 --batch 8 --steps 3 --ep "$ep" --out "$OUT/parity-$ep"
done
for ep in cpu cuda webgpu; do [ -f "$OUT/parity-$ep/metrics.jsonl" ] && figure "$OUT/parity-$ep" "parity-$ep"; done

# 3. DINO's real graph: vit_small/16, 224 px, K = 65536, one step (build, compile, run, peak RSS).
check vit-small-cuda env DINO_EP=cuda "$NODE" --import tsx bench/experiments/vit-small-step.ts --ep cuda
check vit-small-webgpu "$NODE" --import tsx bench/experiments/vit-small-step.ts --ep webgpu

# 4. Throughput of the training step with the state kept near the device (K steps per run on CUDA).
for k in 1 8; do
  check "train-tiny6-cuda-k$k" "$NODE" bin/dino.mjs train --preset fmnist-tiny6 --batch 64 --steps 48 --ep cuda --steps-per-run "$k" --out "$OUT/tiny6-k$k"
done
# vit_small/16 at DINO's setting (2 x 224 + 8 x 96 crops, batch 64) on an RGB folder: DINO_GPU_CHECK_DATA, or 2 classes
# of 128 generated 256 px images (throughput only: the images carry no meaning).
DATA=${DINO_GPU_CHECK_DATA:-$OUT/images}
if [ ! -d "$DATA" ]; then
  "$NODE" --input-type=module -e '
    import sharp from "sharp"; import fs from "node:fs";
    const root = process.argv[1];
    for (const c of ["a", "b"]) { fs.mkdirSync(`${root}/${c}`, { recursive: true });
      for (let i = 0; i < 128; i++) await sharp({ create: { width: 256, height: 256, channels: 3, background: { r: (i * 37) % 256, g: (i * 91) % 256, b: c === "a" ? 40 : 200 } } })
        .png().toFile(`${root}/${c}/${i}.png`); }' "$DATA"
fi
check train-vits16-cuda-k8 "$NODE" bin/dino.mjs train --preset vit_small --batch 64 --steps 16 --ep cuda --steps-per-run 8 --data "$DATA" --out "$OUT/vits16-k8"
# The same in mixed precision (float16 MatMuls, dynamic loss scaling); PyTorch AMP: 100 ms/step. metrics.jsonl has loss_scale, skipped.
check train-vits16-cuda-k8-fp16 "$NODE" bin/dino.mjs train --preset vit_small --batch 64 --steps 16 --ep cuda --steps-per-run 8 --precision fp16 --data "$DATA" --out "$OUT/vits16-k8-fp16"
# bfloat16 MatMuls, no loss scaling (PyTorch autocast with dtype=torch.bfloat16): metrics.jsonl has no loss_scale.
check train-vits16-cuda-k8-bf16 "$NODE" bin/dino.mjs train --preset vit_small --batch 64 --steps 16 --ep cuda --steps-per-run 8 --precision bf16 --data "$DATA" --out "$OUT/vits16-k8-bf16"
# 5. The step alone at scale, as `dino bench` reports it (TFLOP/s, fraction of the EP's fp32 MatMul ceiling, state
#    round-trip share, GPU memory in use): one JSON line each.
for k in 1 8; do
  for p in fp32 fp16 bf16; do
    check "bench-vits16-k$k-$p" "$NODE" bin/dino.mjs bench --preset vit_small --ep cuda --batch 64 --steps-per-run "$k" --precision "$p" --json
    [ -f "$OUT/bench-vits16-k$k-$p.log" ] && grep '^{' "$OUT/bench-vits16-k$k-$p.log"
  done
done
check bench-tiny6-cuda-k16 "$NODE" bin/dino.mjs bench --preset fmnist-tiny6 --train-only --ep cuda --batch 64 --steps-per-run 16 --json
[ -f "$OUT/bench-tiny6-cuda-k16.log" ] && grep '^{' "$OUT/bench-tiny6-cuda-k16.log"
check bench-vits16-webgpu "$NODE" bin/dino.mjs bench --preset vit_small --ep webgpu --batch 64 --json
[ -f "$OUT/bench-vits16-webgpu.log" ] && grep '^{' "$OUT/bench-vits16-webgpu.log"

# 6. The data pipeline feeding the GPU: ImageNet-like JPEGs (500 x 375, quality 90; bench/make-image-folder.ts, or
#    DINO_GPU_CHECK_JPEGS), DINO's crops. First the loader alone on every core but one (images/s, CPU-ms per image),
#    then vit_small/16 training from those files in fp16: metrics.jsonl's images_per_s and data_wait_ms say whether
#    the step waits for data (target: the loader above 640 images/s, data_wait_ms near 0).
JPEGS=${DINO_GPU_CHECK_JPEGS:-$OUT/jpegs}
[ -d "$JPEGS" ] || "$NODE" --import tsx bench/make-image-folder.ts "$JPEGS" --count 1024
WORKERS=$(( $(nproc) > 2 ? $(nproc) - 1 : 1 ))
check loader-jpegs "$NODE" bin/dino.cjs bench --loader-only --data "$JPEGS" --num-workers "$WORKERS" --steps 24 --batch 64
check train-vits16-jpegs-fp16 "$NODE" bin/dino.cjs train --preset vit_small --batch 64 --steps 32 --ep cuda --steps-per-run 8 --precision fp16 --num-workers "$WORKERS" --data "$JPEGS" --out "$OUT/vits16-jpegs"
[ -f "$OUT/vits16-jpegs/metrics.jsonl" ] && "$NODE" -e '
  const m = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse).slice(8);
  const med = (k) => m.map((x) => x[k] ?? 0).sort((a, b) => a - b)[m.length >> 1];
  console.log(JSON.stringify({ figure: "vits16-jpegs-fp16", images_per_s: med("images_per_s"), data_wait_ms: med("data_wait_ms"), step_ms: med("step_ms") }));' "$OUT/vits16-jpegs/metrics.jsonl"

for d in tiny6-k1 tiny6-k8 vits16-k8 vits16-k8-fp16 vits16-k8-bf16; do [ -f "$OUT/$d/metrics.jsonl" ] && figure "$OUT/$d" "$d"; done
exit $status
