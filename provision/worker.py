"""The pyinfra run, in a process of its own: ``python -m provision.worker``.

Why a separate process: pyinfra runs hosts in parallel on gevent, which needs the
standard library monkey-patched before anything else is imported; the CLI process
runs asyncio (the operator client). Patching the CLI process would mix the two, so
the CLI starts this worker and reads its events (``provision.events``, one JSON
line each) from its stdout; the worker's own stdout is redirected to stderr so
nothing else can end up in that stream.

The worker drives pyinfra's API the way the ``pyinfra`` command does (CLI mode, so a
deploy file with per-host branches orders its operations by line): load the
inventory, apply ``--limit``, connect to all hosts in parallel, load the deploy
file on each host (facts, and change detection), report the plan, optionally wait
for "go" on stdin, execute, and report each host's outcome.
"""

from gevent import monkey  # isort: skip

monkey.patch_all()  # noqa: E402 - must come before every other import

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

from centrality_core.errors import CentralityError  # noqa: E402
from centrality_core.sanitize import one_line  # noqa: E402

from . import events as ev  # noqa: E402
from . import reasons  # noqa: E402
from .settings import HostSettings, resolve  # noqa: E402

DEPLOYS = {"install": "deploy.py", "remove": "remove.py"}
CONNECT_TIMEOUT_S = 10


@dataclass
class Outcome:
    settings: HostSettings | None = None
    reason: str = ""
    planned: list[str] = field(default_factory=list)


class Emitter:
    def __init__(self, fd: int) -> None:
        self._out = os.fdopen(fd, "wb", buffering=0)

    def __call__(self, event: ev.Event) -> None:
        self._out.write(ev.encode(event))


class HostLog(logging.Handler):
    """Keeps the last warning/error pyinfra logged for each host (``[host] message``)."""

    _PREFIX = re.compile(r"^\[([^\]]+)\]\s*(.*)$", re.S)

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            m = self._PREFIX.match(record.getMessage())
        except Exception:  # noqa: BLE001 - never let logging break the run
            return
        if m and m.group(2).strip():
            self.last[m.group(1).strip()] = one_line(m.group(2).strip(), 200)


def _target(host) -> str:
    user = host.data.get("ssh_user")
    address = host.data.get("ssh_hostname") or host.name
    port = host.data.get("ssh_port")
    return f"{user + '@' if user else ''}{address}{':' + str(port) if port else ''}"


def _connect_message(exc: BaseException) -> str:
    """pyinfra's message, with the socket error paramiko hid ("Unable to connect to port 22")."""
    message = str(exc)
    cause = exc.__cause__ or exc.__context__
    for err in (getattr(cause, "errors", None) or {}).values():  # paramiko NoValidConnectionsError
        if isinstance(err, OSError) and err.strerror:
            return f"Could not connect ({err.strerror})"
    return message


def _op_name(state, op_hash: str) -> str:
    return ", ".join(sorted(state.op_meta[op_hash].names)) or op_hash


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provision.worker")
    parser.add_argument("inventory")
    parser.add_argument("--deploy", choices=sorted(DEPLOYS), default="install")
    parser.add_argument("--limit", action="append", default=[])
    parser.add_argument("--dry", action="store_true")
    parser.add_argument("--confirm", action="store_true", help="wait for 'go' on stdin before executing")
    parser.add_argument("--wheel", help="the agent wheel to upload (centrality_wheel)")
    parser.add_argument("--check", action="store_true",
                        help="only load the inventory and apply --limit (fails fast on a bad name)")
    parser.add_argument("--parallel", type=int, default=0)
    parser.add_argument("--connect-timeout", type=int, default=CONNECT_TIMEOUT_S)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)

    emit = Emitter(os.dup(1))
    os.dup2(2, 1)  # anything printed from here on goes to stderr, not into the events
    os.environ["PYINFRA_PROGRESS"] = "off"
    try:
        run(args, emit)
    except CentralityError as exc:
        emit(ev.Fatal(reason=exc.reason, exit_code=exc.exit_code))
        return 1
    except Exception as exc:  # noqa: BLE001 - report, then fail: the CLI shows the reason
        traceback.print_exc()
        cause = getattr(exc, "exception", None) or exc  # pyinfra wraps errors raised in deploy files
        why = cause.reason if isinstance(cause, CentralityError) else f"{type(cause).__name__}: {cause}"
        emit(ev.Fatal(reason=one_line(f"provisioning failed: {why}", 300)))
        return 1
    return 0


def run(args: argparse.Namespace, emit: Emitter) -> None:
    if args.check:  # the inventory loaded and --limit applied as for a run; no host is touched
        Run(args, emit).setup()
        emit(ev.Done())
        return
    Run(args, emit).all()


class Run:
    """One pyinfra run, phase by phase: setup, connect, prepare, (confirm), execute, report."""

    def __init__(self, args: argparse.Namespace, emit: Emitter) -> None:
        self.args, self.emit = args, emit
        self.outcomes: dict[str, Outcome] = {}
        self.host_log = HostLog()
        self.order: list[str] = []

    def all(self) -> None:
        self.setup()
        self.connect()
        self.prepare()
        if self.args.dry:
            self.report(executed=False)
            return
        if self.args.confirm:
            self.emit(ev.Confirm())
            if sys.stdin.readline().strip() != "go":
                self.emit(ev.Done(aborted=True))
                return
        self.execute()
        self.report(executed=True)

    # ------------------------------------------------------------------ phases

    def setup(self) -> None:
        import pyinfra
        from pyinfra.api import Config
        from pyinfra.context import ctx_config, ctx_inventory, ctx_state

        from . import inventory
        from .ops import DeployState

        pyinfra.is_cli = True  # order operations by deploy-file line, as the pyinfra command does
        self._logging()
        self.state = state = DeployState(check_for_changes=True)
        state.cwd = os.getcwd()
        ctx_state.set(state)
        config = Config()
        ctx_config.set(config)
        config.CONNECT_TIMEOUT = self.args.connect_timeout
        if self.args.parallel:
            config.PARALLEL = self.args.parallel
        config.lock_current_state()

        override = {"centrality_wheel": self.args.wheel} if self.args.wheel else {}
        inv = inventory.load(self.args.inventory, override_data=override)
        ctx_inventory.set(inv)
        state.init(inv, config, initial_limit=inventory.select(inv, self.args.limit))
        self.targets = [h for h in inv if state.is_host_in_limit(h)]

        infos = []
        for h in self.targets:
            o = self.outcomes[h.name] = Outcome()
            try:
                o.settings = resolve(h.name, h.data, h.groups)
            except CentralityError as exc:
                o.reason = reasons.line(reasons.INSTALL_FAILED, exc.reason)
            s = o.settings
            infos.append(ev.HostInfo(host=h.name, name=s.name if s else "", target=_target(h),
                                     labels=s.labels if s else {}, prefix=s.layout.prefix if s else ""))
        self.emit(ev.Hosts(hosts=infos))
        for h in self.targets:
            if self.outcomes[h.name].reason:
                self._fail(h, self.outcomes[h.name].reason)

    def connect(self) -> None:
        """Connect to every host in parallel; each failure gets its one-line reason."""
        import gevent
        from pyinfra.api.exceptions import ConnectError
        from pyinfra.api.state import StateStage

        self.state.set_stage(StateStage.Connect)

        def one(h) -> str:
            key = str(h.data.get("ssh_key") or "")
            try:
                h.connect(show_errors=False, raise_exceptions=True)
                return ""
            except ConnectError as exc:
                return reasons.connect_failure(_connect_message(exc), target=_target(h), key=key)
            except Exception as exc:  # noqa: BLE001 - e.g. an unreadable key file
                return reasons.connect_failure(f"{type(exc).__name__}: {exc}", target=_target(h), key=key)

        greenlets = {self.state.pool.spawn(one, h): h for h in self.targets if not self.outcomes[h.name].reason}
        for g in gevent.iwait(list(greenlets)):
            h, why = greenlets[g], g.get()
            if why:
                self._fail(h, why)
            else:
                self.state.activate_host(h)
                self.emit(ev.Connected(host=h.name))

    def prepare(self) -> None:
        """Load the deploy on every connected host: facts, operations, change detection."""
        from pyinfra.api.exceptions import PyinfraError
        from pyinfra.api.state import StateStage
        from pyinfra.context import ctx_host, ctx_state
        from pyinfra_cli.util import load_deploy_file

        state = self.state
        state.set_stage(StateStage.Prepare)
        if state.active_hosts:
            try:
                load_deploy_file(state, str(Path(__file__).with_name(DEPLOYS[self.args.deploy])))
            except PyinfraError as exc:
                logging.getLogger("pyinfra").warning("%s", exc)  # "No hosts remaining!": reasons follow
            finally:
                state.pool.join()  # a host that raised must not leave others half-loaded
        for h in self.targets:
            if h in state.failed_hosts and not self.outcomes[h.name].reason:  # a fact failed
                detail = self.host_log.last.get(h.name)
                self._fail(h, reasons.line(reasons.INSTALL_FAILED, "could not read the host's state"
                                           + (f": {detail}" if detail else "")))

        self.order = state.get_op_order()
        self.emit(ev.Plan(ops=[_op_name(state, oh) for oh in self.order]))
        for h in self.targets:
            o = self.outcomes[h.name]
            if o.reason:
                continue
            with ctx_state.use(state), ctx_host.use(h):
                o.planned = [_op_name(state, oh) for oh in self.order
                             if oh in state.ops[h] and state.ops[h][oh].operation_meta.will_change]
            self.emit(ev.Planned(host=h.name, changes=o.planned))

    def execute(self) -> None:
        from pyinfra.api import BaseStateCallback
        from pyinfra.api.exceptions import PyinfraError
        from pyinfra.api.operations import run_ops
        from pyinfra.api.state import StateStage

        index = {oh: i + 1 for i, oh in enumerate(self.order)}
        emit = self.emit

        def step(state, host, op_hash, status: str) -> None:
            emit(ev.Step(host=host.name, op=_op_name(state, op_hash), index=index.get(op_hash, 0), status=status))

        class Progress(BaseStateCallback):
            def operation_host_start(self, state, host, op_hash):
                if op_hash in state.ops[host]:
                    step(state, host, op_hash, "start")

            def operation_host_success(self, state, host, op_hash, retry_count=0):
                if op_hash in state.ops[host]:
                    step(state, host, op_hash, "ok")

            def operation_host_error(self, state, host, op_hash, retry_count=0, max_retries=0):
                step(state, host, op_hash, "error")

        self.state.add_callback_handler(Progress())
        self.state.set_stage(StateStage.Execute)
        if self.state.active_hosts:
            try:
                run_ops(self.state)
            except PyinfraError as exc:
                logging.getLogger("pyinfra").warning("%s", exc)  # every host failed: reasons follow

    def report(self, *, executed: bool) -> None:
        for h in self.targets:
            o = self.outcomes[h.name]
            if o.reason:
                self.emit(ev.Result(host=h.name, ok=False, changed=False, reason=o.reason))
            elif not executed:
                self.emit(ev.Result(host=h.name, ok=True, changed=bool(o.planned), changes=o.planned))
            else:
                self.emit(self._result(h, o))
        for h in list(self.state.activated_hosts):
            try:
                h.disconnect()
            except Exception:  # noqa: BLE001 - best effort at the end
                pass
        self.emit(ev.Done())

    # ------------------------------------------------------------------ helpers

    def _result(self, h, o: Outcome) -> ev.Result:
        """What execution did on one host: the operations that changed, or why it failed."""
        changed, failed = [], None
        for oh in self.order:
            data = self.state.ops[h].get(oh)
            if data is None or not data.operation_meta.is_complete():
                continue
            meta = data.operation_meta
            if meta.did_change():
                changed.append(_op_name(self.state, oh))
            elif meta.did_error() and failed is None:
                failed = (oh, meta)
        reason = ""
        if failed is not None or h in self.state.failed_hosts:
            reason = self.state.failures.reason(h.name)
            if not reason and failed is not None:
                oh, meta = failed
                reason = reasons.op_failure(_op_name(self.state, oh), meta.stderr_lines, meta.stdout_lines)
            reason = reason or reasons.line(reasons.INSTALL_FAILED,
                                            self.host_log.last.get(h.name, "see the -v output"))
        public_key = log_hint = ""
        if not reason and self.args.deploy == "install":
            after = self._read_back(h, o.settings)
            if after is not None:
                public_key = after.public_key
                log_hint = f"journalctl -u {o.settings.service}" if after.systemd else o.settings.layout.log
        return ev.Result(host=h.name, ok=not reason, changed=bool(changed), changes=changed, reason=reason,
                         public_key=public_key, log_hint=log_hint)

    def _read_back(self, h, s: HostSettings):
        """The host's state after the deploy (its agent's public key), or None."""
        from pyinfra.api.facts import get_fact
        from pyinfra.context import ctx_host, ctx_state

        from .facts import AgentHost

        try:
            with ctx_state.use(self.state), ctx_host.use(h):
                return get_fact(self.state, h, AgentHost, kwargs={"prefix": s.layout.prefix, "python": s.python,
                                                                   "service": s.service},
                                apply_failed_hosts=False)
        except Exception:  # noqa: BLE001 - the key check is a bonus, not a requirement
            return None

    def _fail(self, h, reason: str) -> None:
        self.outcomes[h.name].reason = reason
        self.state.failed_hosts.add(h)
        self.emit(ev.Failed(host=h.name, reason=reason))

    def _logging(self) -> None:
        verbose = self.args.verbose
        logger = logging.getLogger("pyinfra")
        logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
        to_stderr = logging.StreamHandler(sys.stderr)
        to_stderr.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.ERROR)
        logger.addHandler(to_stderr)
        logger.addHandler(self.host_log)
        logger.propagate = False


if __name__ == "__main__":
    sys.exit(main())
