#!/usr/bin/env bash
# Every benchmark, one after the other (they must not share the cores), into benchmarks/results/.
# Run on an otherwise idle machine; the README's performance section quotes these files.
#   bash benchmarks/run_all.sh            # about 3 hours on 2 cores
#   bash benchmarks/run_all.sh --suite    # the core suite only (roofline, every model, backend,
#                                         # precision, batch 1 and 8, the peers), then the README
#                                         # tables (~45 min on 2 cores)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh"
cd "$root"
py=.venv/bin/python
export HF_HUB_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2
step() { echo "== $* ($(date +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))" >&2; "$@"; }
# The suite: the roofline (results/roofline.json: theoretical roof per precision from the measured
# clock, beside an OpenVINO MatMul), every model x backend x precision at batch 1 and 8, plus TVM
# at batch 1 (it is left out of `auto`; this shows why), then the peers (benchmarks/peers.py:
# inductor with freezing, torch.compile(backend="openvino"), ONNX Runtime, TF XLA, Optimum where
# installed), each in its own process; its tables go into the README. A "ROOFLINE VIOLATION"
# on stderr or in core_bench.md means the roof's derivation is wrong: do not publish it.
step $py benchmarks/core_bench.py --tvm
step $py benchmarks/update_readme.py
step $py benchmarks/ort_isolation.py   # the ONNX Runtime peer rows, each alone in a process
[ "${1:-}" = "--suite" ] && exit 0
step $py benchmarks/ts_frontend.py   # TorchServe's own frontend: cold vs warm, per client
step $py benchmarks/torchserve_bench.py --arch resnet18
step $py benchmarks/torchserve_bench.py --arch resnet50 --requests 60
for w in 1 4; do  # the worker sweep (the default above is one worker per core)
  step $py benchmarks/torchserve_bench.py --arch resnet50 --requests 60 --workers $w \
    --out-dir benchmarks/results/torchserve_workers$w
done
step $py benchmarks/torchserve_bench.py --arch resnet50 --requests 60 --workers 1 --precision int8 \
  --out-dir benchmarks/results/torchserve_workers1
if grep -qw avx512_bf16 /proc/cpuinfo; then  # bf16 where the CPU has it (the results say what served)
  step $py benchmarks/torchserve_bench.py --arch resnet50 --requests 60 --workers 1 --precision bf16 \
    --out-dir benchmarks/results/torchserve_workers1
fi
step $py benchmarks/torchserve_text_bench.py   # MiniLM through a custom handler
step $py benchmarks/kserve_bench.py --model mobilenet --transport grpc
step $py benchmarks/kserve_bench.py --model resnet50 --transport grpc
step $py benchmarks/kserve_bench.py --model resnet50 --transport grpc --precision int8
step $py benchmarks/kserve_bench.py --model mobilenet_v3 --transport grpc
step $py benchmarks/kserve_bench.py --model minilm --transport grpc
step $py benchmarks/kserve_bench.py --model minilm --transport grpc --precision int8
step $py benchmarks/kserve_bench.py --model mobilenet --transport rest   # KServe's REST decode cost
step $py benchmarks/kserve_bench.py --model resnet50 --transport rest --concurrency 1  # vs gRPC
# Where one request's time goes, stage by stage, on each server; then one figure and table for
# the README's "Where a request's time goes".
step $py benchmarks/request_breakdown.py --models resnet50,minilm --requests 40
for m in resnet50 minilm; do
  step $py benchmarks/request_breakdown_kserve.py --model $m
  step $py benchmarks/request_breakdown_tfserving.py --model $m
done
step $py benchmarks/fused_vs_plain.py   # the boost handler's fused graph against the plain model, in process
step $py benchmarks/request_summary.py --readme
step $py benchmarks/tfserving_bench.py
step $py benchmarks/interpose_bench.py
