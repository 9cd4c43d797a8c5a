#!/usr/bin/env bash
# Set up .venv if missing or stale, then run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-env.sh"
cd "$root"
export HF_HUB_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2
exec "$root/.venv/bin/python" -m pytest -q -p no:cacheprovider --durations=15 "$@"
