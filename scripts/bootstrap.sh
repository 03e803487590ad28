#!/usr/bin/env bash
# Prepare a machine to develop and test Centrality. Idempotent and fast when
# everything is already in place.
#
#  1. System packages (Debian/Ubuntu): PostgreSQL server binaries, OpenSSH
#     server + client and HAProxy, which the test fixtures run for real. Installed with
#     apt-get only when missing and only as root; otherwise we print what to
#     install and carry on.
#  2. A virtualenv in <repo>/.venv with the project installed editable with its
#     `test` extra. Skipped when .venv/.stamp is newer than pyproject.toml.
#
# Environment: PYTHON  interpreter used to create the venv (default: python3).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

PYTHON="${PYTHON:-python3}"
venv="$repo_root/.venv"
stamp="$venv/.stamp"

log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

have_initdb() {
    command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
have_sshd() { [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1; }
have_ssh() { command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1; }
have_haproxy() { [ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null 2>&1; }
have_python() { command -v "$PYTHON" >/dev/null 2>&1; }
# Debian ships ensurepip (needed by `python3 -m venv`) in the python3-venv package.
have_venv_module() { "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; }

# --- 1. system packages ------------------------------------------------------
missing=()
have_initdb || missing+=(postgresql)
have_sshd || missing+=(openssh-server)
have_ssh || missing+=(openssh-client)
have_haproxy || missing+=(haproxy)
if [ ! -x "$venv/bin/python" ]; then
    # Only needed to create the venv; a fresh minimal Debian may lack both.
    if ! have_python; then
        missing+=(python3 python3-venv)
    elif ! have_venv_module; then
        missing+=(python3-venv)
    fi
fi

if [ "${#missing[@]}" -gt 0 ]; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
        log "installing ${missing[*]}"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
    else
        log "warning: missing system packages: ${missing[*]}"
        log "         install them with: sudo apt-get install ${missing[*]}"
        log "         (tests that need them skip, or fail under CENTRALITY_REQUIRE_*=1)"
    fi
fi

# --- 2. virtualenv -----------------------------------------------------------
check_python_version() {  # $1: interpreter
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null
}

if [ ! -x "$venv/bin/python" ]; then
    have_python || die "'$PYTHON' not found; Python >= 3.10 is required (set PYTHON=/path/to/python3)"
    check_python_version "$PYTHON" \
        || die "Python >= 3.10 is required, '$PYTHON' is $("$PYTHON" -V 2>&1)"
    log "creating $venv"
    "$PYTHON" -m venv "$venv" \
        || die "'$PYTHON -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
    rm -f "$stamp"
fi
check_python_version "$venv/bin/python" \
    || die "$venv uses $("$venv/bin/python" -V 2>&1); Python >= 3.10 is required (remove .venv and re-run)"

if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
    exit 0  # dependencies up to date
fi

log "installing the project and its test dependencies into .venv"
# A pip upgrade is nice to have, not essential (e.g. offline with a local index).
"$venv/bin/python" -m pip install -q --upgrade pip || log "warning: could not upgrade pip; continuing"
# setuptools explains editable installs in a multi-line "BuildBackendWarning: Editable
# installation" block on every run; it is information for package authors, not for a user here.
PYTHONWARNINGS="ignore:Editable installation" "$venv/bin/pip" install -q -e ".[test]"
touch "$stamp"
log "done"
