#!/usr/bin/env bash
# Set up .venv if missing or stale, then boost a real pretrained model end to end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh"
cd "$root"
export HF_HUB_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2
exec "$root/.venv/bin/python" examples/demo.py "$@"
