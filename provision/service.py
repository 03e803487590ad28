"""How the agent is kept running on a host: a systemd unit, or the fallback supervisor.

Where systemd runs (``/run/systemd/system`` exists) the agent is the unit
``centrality-agent.service`` with ``Restart=always``. Where it does not (containers,
chroots, the sshd test hosts), ``PREFIX/bin/centrality-agent-supervise`` does the same
job with a POSIX shell loop:

``start``
    start the loop in its own session (so it outlives the SSH connection and owns a
    process group), write its pid to ``PREFIX/run/agent.pid`` and return once it runs.
    The loop runs ``centrality agent run`` and restarts it 5 s after it exits.
    Output goes to ``PREFIX/var/log/agent.log`` (rotated once past 10 MiB).
``stop``
    SIGTERM to the whole process group (loop and agent), SIGKILL after 15 s.
``restart``, ``status``
    as usual; ``status`` exits 0 when running and 3 when not.

Both texts are rendered from the host's layout, so they are plain files that
pyinfra uploads (and compares by checksum, so an unchanged host stays unchanged).
"""

from __future__ import annotations

import shlex

from .settings import Layout

RESTART_DELAY_S = 5
STOP_TIMEOUT_S = 15
LOG_ROTATE_BYTES = 10 * 1024 * 1024


def systemd_unit(layout: Layout) -> str:
    return f"""\
# Managed by `centrality provision`; changes are overwritten on the next run.
[Unit]
Description=Centrality agent ({layout.prefix})
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={layout.centrality} agent run --config-dir {layout.config_dir}
Environment=PYTHONUNBUFFERED=1
Restart=always
RestartSec={RESTART_DELAY_S}
KillMode=control-group
TimeoutStopSec={STOP_TIMEOUT_S}

[Install]
WantedBy=multi-user.target
"""


_SUPERVISOR = r"""#!/bin/sh
# Centrality agent supervisor, for hosts where systemd does not run.
# Managed by `centrality provision`; changes are overwritten on the next run.
#
#   centrality-agent-supervise start|stop|restart|status
#
# `start` runs a loop in its own session and process group that keeps
# `centrality agent run` going (restarting it @DELAY@s after it exits); `stop`
# ends the whole process group. Everything runs in functions and ends in `exit`,
# so replacing this file while the loop runs is safe.

PREFIX=@PREFIX@
SELF=@SELF@
PIDFILE=@PIDFILE@
LOG=@LOG@
PY=@PYTHON@
AGENT=@AGENT@
CONFIG=@CONFIG@

running() {
    [ -f "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE" 2>/dev/null)
    [ -n "$pid" ] || return 1
    kill -s 0 "$pid" 2>/dev/null || return 1
    # A pid reused by another program after a reboot does not count.
    [ ! -r "/proc/$pid/cmdline" ] || grep -q centrality-agent-supervise "/proc/$pid/cmdline"
}

rotate() {
    size=$(wc -c < "$LOG" 2>/dev/null || echo 0)
    if [ "${size:-0}" -gt @ROTATE@ ]; then mv -f "$LOG" "$LOG.1"; fi
}

loop() {
    echo $$ > "$PIDFILE.tmp" && mv -f "$PIDFILE.tmp" "$PIDFILE"
    stopping=
    child=
    trap '' HUP
    trap 'stopping=1; [ -z "$child" ] || kill -s TERM "$child" 2>/dev/null' TERM INT
    while [ -z "$stopping" ]; do
        rotate
        exec >>"$LOG" 2>&1
        say "starting the agent"
        "$AGENT" agent run --config-dir "$CONFIG" </dev/null &
        child=$!
        wait "$child"
        status=$?
        # A trapped signal interrupts `wait`: wait again until the agent is gone.
        while kill -s 0 "$child" 2>/dev/null; do wait "$child"; done
        child=
        [ -z "$stopping" ] || break
        say "agent exited with status $status; restarting in @DELAY@s"
        sleep @DELAY@ &
        child=$!
        wait "$child"
        child=
    done
    # Only our own pid file: a new supervisor may already have written its own.
    if [ "$(cat "$PIDFILE" 2>/dev/null)" = "$$" ]; then rm -f "$PIDFILE"; fi
    say "stopped"
    exit 0
}

say() {
    echo "$(date '+%Y-%m-%dT%H:%M:%S%z') supervisor: $*"
}

start() {
    if running; then
        echo "centrality agent already running (supervisor pid $(cat "$PIDFILE"))"
        exit 0
    fi
    mkdir -p "$(dirname "$PIDFILE")" "$(dirname "$LOG")"
    rm -f "$PIDFILE"
    # Fork, start a new session (own process group, no terminal), then become the loop.
    "$PY" -c 'import os, sys
if os.fork():
    sys.exit(0)
os.setsid()
os.execv("/bin/sh", ["/bin/sh", sys.argv[1], "run"])' "$SELF" </dev/null >>"$LOG" 2>&1
    i=0
    while [ $i -lt 100 ]; do
        if running; then
            echo "centrality agent started (supervisor pid $(cat "$PIDFILE"), log $LOG)"
            exit 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    echo "centrality agent supervisor did not start; see $LOG" >&2
    exit 1
}

stop() {
    if ! running; then
        rm -f "$PIDFILE"
        echo "centrality agent not running"
        return 0
    fi
    pid=$(cat "$PIDFILE")
    kill -s TERM -- -"$pid" 2>/dev/null || kill -s TERM "$pid" 2>/dev/null
    i=0
    while [ $i -lt @STOP_TENTHS@ ] && kill -s 0 -- -"$pid" 2>/dev/null; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -s 0 -- -"$pid" 2>/dev/null; then
        echo "centrality agent did not stop in @STOP@s: killing it" >&2
        kill -s KILL -- -"$pid" 2>/dev/null
    fi
    rm -f "$PIDFILE"
    echo "centrality agent stopped"
}

main() {
    case "$1" in
        start) start ;;
        stop) stop; exit 0 ;;
        restart) stop; start ;;
        status)
            if running; then echo "running (supervisor pid $(cat "$PIDFILE"))"; exit 0; fi
            echo "not running"; exit 3 ;;
        run) loop ;;
        *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
    esac
    exit $?
}

main "$@"
exit $?
"""


def supervisor_script(layout: Layout) -> str:
    values = {
        "@PREFIX@": shlex.quote(layout.prefix),
        "@SELF@": shlex.quote(layout.supervisor),
        "@PIDFILE@": shlex.quote(layout.pidfile),
        "@LOG@": shlex.quote(layout.log),
        "@PYTHON@": shlex.quote(layout.python),
        "@AGENT@": shlex.quote(layout.centrality),
        "@CONFIG@": shlex.quote(layout.config_dir),
        "@DELAY@": str(RESTART_DELAY_S),
        "@ROTATE@": str(LOG_ROTATE_BYTES),
        "@STOP_TENTHS@": str(STOP_TIMEOUT_S * 10),
        "@STOP@": str(STOP_TIMEOUT_S),
    }
    text = _SUPERVISOR
    for key, value in values.items():
        text = text.replace(key, value)
    return text
