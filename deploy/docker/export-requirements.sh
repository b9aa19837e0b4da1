#!/usr/bin/env bash
# Regenerate requirements.txt (pinned runtime dependencies from uv.lock, minus Ray, which the
# official Ray base images already carry). Run from anywhere; tests check it is current.
set -euo pipefail
cd "$(dirname "$0")/../.."
UV=${UV:-.tools/bin/uv}
"$UV" export --frozen --no-hashes --no-emit-project --no-dev --no-header --format requirements-txt \
  | grep -v -E '^ray(==|\[)' | grep -v '^    #' > deploy/docker/requirements.txt
