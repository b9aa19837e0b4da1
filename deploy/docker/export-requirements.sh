#!/usr/bin/env bash
# Regenerate the pinned runtime dependencies from uv.lock, minus Ray (which the official Ray
# base images already carry): requirements.txt (Dockerfile.cpu: the `pipeline` extra, as the
# images are coordinator and chip hosts) and requirements-cuda.txt (Dockerfile.cuda: the
# `gpu` extra too). Run from anywhere; tests/deploy/test_deploy_manifests.py checks both are current.
set -euo pipefail
cd "$(dirname "$0")/../.."
UV=${UV:-.tools/bin/uv}
export_locked() {
  "$UV" export --frozen --no-hashes --no-emit-project --no-dev --no-header --format requirements-txt "$@" \
    | grep -v -E '^ray(==|\[)' | grep -v '^    #'
}
export_locked --extra pipeline > deploy/docker/requirements.txt
export_locked --extra pipeline --extra gpu > deploy/docker/requirements-cuda.txt
