#!/usr/bin/env bash
# Create or refresh .venv at the repository root with everything the demo and the tests need.
# The environment is rebuilt only when constraints.txt, pyproject.toml, setup.py or the shim's
# C sources change (their hash is stamped into .venv; the editable install builds the C code). Every install goes through constraints.txt, which pins
# torch: an unpinned torch would pull a multi-GB build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
stamp_file="$venv/.yellowstone-stamp"
stamp="$(cat constraints.txt pyproject.toml setup.py plugins/tfserving/csrc/* | sha256sum | cut -c1-16)"

if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
echo "setting up $venv (first run takes a few minutes)" >&2
python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade "pip>=25.1"
# torch first: the largest download, and the pin every later step must respect.
"${pip[@]}" install -c constraints.txt torch==2.14.1 torchvision==0.29.1
"${pip[@]}" install -c constraints.txt -e ".[all]" --group dev
"$venv/bin/python" -m pip check >&2 || { echo "pip check failed" >&2; exit 1; }
echo "$stamp" > "$stamp_file"
