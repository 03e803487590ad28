#!/usr/bin/env bash
# Run the test suite against real PostgreSQL, sshd and HAProxy. Extra arguments go to
# pytest, e.g. `scripts/test.sh tests/test_fixtures_smoke.py -x`.
#
# A missing PostgreSQL/sshd/HAProxy is an error here (the fixtures fail instead of
# skipping), and so is a run that collects no tests: this must never pass
# silently.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/bootstrap.sh

export CENTRALITY_REQUIRE_POSTGRES=1
export CENTRALITY_REQUIRE_SSHD=1
export CENTRALITY_REQUIRE_HAPROXY=1

status=0
# Two workers by default: most tests wait on sockets and subprocesses, so a
# 2-core machine runs two of them at once (whole files per worker, as module
# fixtures expect). CENTRALITY_TEST_WORKERS=0 runs in this process alone.
workers="${CENTRALITY_TEST_WORKERS:-2}"
.venv/bin/python -m pytest -q -ra -p no:cacheprovider -n "$workers" --dist loadfile "$@" || status=$?

if [ "$status" -eq 5 ]; then
    echo "test.sh: no tests ran (pytest collected nothing): failing" >&2
    exit 1
fi
exit "$status"
