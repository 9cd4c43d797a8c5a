#!/usr/bin/env bash
# Every benchmark, one after the other (they must not share the cores), into benchmarks/results/.
# Run on an otherwise idle machine; the README's performance section quotes these files.
#   bash benchmarks/run_all.sh            # about an hour on 2 cores
#   bash benchmarks/run_all.sh --suite    # the core suite only (every model, backend,
#                                         # precision, batch 1 and 8), then the README tables
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh"
cd "$root"
py=.venv/bin/python
export HF_HUB_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2
step() { echo "== $* ($(date +%H:%M:%S), load $(cut -d' ' -f1 /proc/loadavg))" >&2; "$@"; }
# The suite: every model x backend x precision at batch 1 and 8, plus TVM at batch 1 (it is left
# out of `auto`; this shows why); its tables go into the README.
step $py benchmarks/core_bench.py --tvm
step $py benchmarks/update_readme.py
[ "${1:-}" = "--suite" ] && exit 0
step $py benchmarks/torchserve_bench.py --arch resnet18
step $py benchmarks/torchserve_bench.py --arch resnet50 --requests 40
for w in 1 4; do  # the worker sweep (the default above is one worker per core)
  step $py benchmarks/torchserve_bench.py --arch resnet50 --requests 40 --workers $w \
    --out-dir benchmarks/results/torchserve_workers$w
done
step $py benchmarks/torchserve_bench.py --arch resnet50 --requests 40 --workers 1 --precision int8 \
  --out-dir benchmarks/results/torchserve_workers1
step $py benchmarks/torchserve_text_bench.py   # MiniLM through a custom handler
step $py benchmarks/kserve_bench.py --model mobilenet --transport grpc
step $py benchmarks/kserve_bench.py --model resnet50 --transport grpc
step $py benchmarks/kserve_bench.py --model resnet50 --transport grpc --precision int8
step $py benchmarks/kserve_bench.py --model mobilenet_v3 --transport grpc
step $py benchmarks/kserve_bench.py --model minilm --transport grpc
step $py benchmarks/kserve_bench.py --model minilm --transport grpc --precision int8
step $py benchmarks/kserve_bench.py --model mobilenet --transport rest   # KServe's REST decode cost
step $py benchmarks/tfserving_bench.py
step $py benchmarks/interpose_bench.py
