#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed, then run the demo
# (a local control plane on SQLite, an agent for this machine, a simulated
# fleet, and the dashboard in front; q quits and stops everything).
# Extra arguments go to `centrality demo` (e.g. --no-tui, --machines 100).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/bootstrap.sh
exec .venv/bin/centrality demo "$@"
