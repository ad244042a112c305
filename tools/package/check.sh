#!/usr/bin/env bash
# Build the sdist and the wheel (the wheel from the sdist, as a release would), install
# the wheel into a clean venv outside the repository, and run a cancel end to end with
# the installed `buildcontrol`.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
python="${PYTHON:-python3}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$repo/.venv/bin/python" -m build --outdir "$out/dist" "$repo" >"$out/build.log" 2>&1 \
    || { cat "$out/build.log"; exit 1; }
ls "$out/dist"
"$python" -m venv "$out/venv"
"$out/venv/bin/pip" install -q "$out"/dist/*.whl
cd "$out"   # nothing of the checkout is importable from here
"$out/venv/bin/buildcontrol" --version
"$out/venv/bin/python" "$repo/tools/package/installed_cancel.py" \
    "$out/venv/bin/buildcontrol" "$repo/examples/sleepy.yaml"
