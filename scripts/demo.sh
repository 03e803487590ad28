#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed, then run the demo
# (a local control plane on SQLite with an agent for this machine).
# Extra arguments go to `centrality demo` (e.g. --keep).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/bootstrap.sh
exec .venv/bin/centrality demo "$@"
