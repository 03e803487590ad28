"""The machine screen: info, charts of every stream over a chosen window,
the nvidia-smi panel and the machine's recent events.

History comes from ``metrics NAME`` when the screen opens or the window
changes (raw samples up to 10 minutes, 1-minute rollups beyond); live values
are pushed by a ``subscribe --machine NAME`` stream and appended. Charts are
redrawn at most once a second, and only those on screen cost anything.

``d`` drains the machine (a reason is required, as for ``centrality machines
drain --reason``), ``u`` undrains it, ``x`` runs a command on it. The
DRAINED flag arrives with the subscription; who drained it, when and why
come from ``machines show``, reloaded when the flag changes.
"""

from __future__ import annotations

import asyncio
import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.content import Content
from textual.widgets import Static

from centrality_core.backoff import Backoff
from centrality_core.documents import Drain, MachineDetail, MachineLatest
from centrality_core.sanitize import one_line
from centrality_core.timefmt import parse_iso

from .. import format as fmt
from ..series import WINDOWS, Series, charts, data_span
from ..source import SourceError
from ..widgets.charts import MetricChart, TextPanel
from ..widgets.strips import StripChart
from ..widgets.event_table import EventTable
from ..widgets.fleet_table import STATE_GLYPH
from ..widgets.gpu_panel import GpuSection
from .base import BaseScreen
from .dialogs import ReasonScreen

WINDOW_NAMES = {"1m": "1 min", "10m": "10 min", "1h": "1 hour", "24h": "24 hours"}
CHART_EVERY = 1.0  # seconds between chart redraws while data flows
IDLE_REDRAW = 5.0  # ... and while it does not (the window still moves on)
LIVE_KEEP = 600  # live samples kept to merge into freshly loaded history


class MachineScreen(BaseScreen):
    BINDINGS = [
        Binding("1", "window('1m')", "1m"),
        Binding("2", "window('10m')", "10m"),
        Binding("3", "window('1h')", "1h"),
        Binding("4", "window('24h')", "24h"),
        Binding("n", "nvidia", "nvidia-smi"),
        Binding("s", "gpu_sort", "Sort GPU procs", show=False),
        Binding("e", "events", "Events"),
        Binding("x", "exec('machine')", "Exec"),
        Binding("S", "shell", "Shell", show=False),
        Binding("d", "drain", "Drain"),
        Binding("u", "undrain", "Undrain"),
        Binding("R", "reload", "Reload history", show=False),
    ]

    DEFAULT_CSS = """
    MachineScreen #info { height: auto; padding: 0 1; background: $boost; }
    MachineScreen #window { height: 1; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    MachineScreen #page { height: 1fr; scrollbar-size-vertical: 1; scrollbar-background: $surface;
                          scrollbar-color: $panel-lighten-2; scrollbar-color-hover: $panel-lighten-3; }
    MachineScreen #charts { grid-size: 2; grid-gutter: 0 1; grid-rows: 13; height: auto; padding: 0 1; }
    MachineScreen .section { height: 1; padding: 0 1; margin-top: 1; text-style: bold; color: $text-accent; }
    MachineScreen #smi-box { height: auto; overflow-x: auto; overflow-y: hidden; }
    MachineScreen #machine-events { height: 12; }
    MachineScreen .-hidden { display: none; }
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.machine_name = name
        self.crumbs = ["Fleet", name]
        self.window = "10m"
        self.series = Series(WINDOWS[self.window][0])
        self.info: MachineDetail | None = None
        self.info_error = ""
        self.history_loading = False
        self.load_error = ""
        self.smi_text = ""
        self.smi_ts = 0.0
        self.live_docs = 0
        self.chart_widgets: dict[str, MetricChart | StripChart] = {}
        self.span = float(WINDOWS[self.window][0])  # seconds the charts show (less than the window if the data is)
        self._live: list[tuple[float, dict]] = []
        self._dirty = True
        self._charts_at = 0.0
        self._smi_dirty = False
        self._ev_rev = -1
        self._state_seen: str | None = None
        self._drained_seen: bool | None = None

    def compose(self) -> ComposeResult:
        yield from self.chrome_top()
        yield Static(id="info")
        yield Static(id="window")
        with VerticalScroll(id="page"):
            yield GpuSection(id="gpus")
            yield Grid(id="charts")
            yield Static("No samples in this window yet.", id="no-data", classes="section -hidden")
            yield Static("nvidia-smi", id="smi-title", classes="section -hidden")
            with VerticalScroll(id="smi-box", classes="-hidden"):
                yield TextPanel(id="smi")
            yield Static("Recent events", classes="section")
            yield EventTable(self.dash.model.clock, show_machine=False, id="machine-events")
        yield from self.chrome_bottom()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#page").focus()
        self.run_worker(self._load_info(), group="info")
        self.run_worker(self._load_history(), group="history", exclusive=True)
        self.run_worker(self._follow(), group="live")

    # ------------------------------------------------------------------ data

    async def _load_info(self) -> None:
        try:
            self.info = await self.dash.source.machine(self.machine_name)
            self.info_error = ""
            self.dash.model.events.merge(self.info.events)
        except SourceError as exc:
            self.info_error = exc.reason
        if self.is_attached:  # the screen may have been closed meanwhile
            self.safe_tick()

    async def _load_history(self) -> None:
        window = self.window
        seconds, resolution = WINDOWS[window]
        self.history_loading, self.load_error = True, ""
        self._draw_window()
        try:
            rows = await self.dash.source.metrics(self.machine_name, window, resolution)
        except SourceError as exc:
            self.history_loading, self.load_error = False, exc.reason
            self.safe_tick()
            return
        if window != self.window or not self.is_attached:
            return
        series = Series(seconds)
        series.load(rows)
        for ts, values in self._live:
            series.add(ts, values)
        self.series = series
        self.history_loading = False
        self._dirty = True
        self._charts_at = 0.0
        self.safe_tick()

    async def _follow(self) -> None:
        """The live stream of this machine, resubscribed after a failure."""
        backoff = Backoff(initial=0.5, maximum=10.0)
        failed = False
        while True:
            try:
                async for doc in self.dash.source.machine_stream(self.machine_name):
                    backoff.reset()
                    if not self.is_attached:
                        return
                    if failed:  # fill the gap the outage left
                        failed = False
                        self.run_worker(self._load_history(), group="history", exclusive=True)
                    self._on_live(doc)
            except SourceError as exc:
                if not exc.lost:
                    self.info_error = self.info_error or exc.reason
                    return
            failed = True
            await asyncio.sleep(backoff.next())

    def _on_live(self, doc: MachineLatest) -> None:
        ts, values = doc.ts, doc.values
        self.live_docs += 1
        self._live.append((ts, values))
        del self._live[:-LIVE_KEEP]
        if self.series.add(ts, values):
            self._dirty = True
        for section in self.query(GpuSection):  # none while the screen is being closed
            section.live(values, doc.gpu_processes, self._info().get("gpus") or [])
        text = doc.text.get("nvidia_smi")
        if text:
            self.smi_text, self.smi_ts = text, float(doc.text_ts or ts)
            self._smi_dirty = True

    # ------------------------------------------------------------------ drawing

    def tick(self) -> None:
        super().tick()
        model = self.dash.model
        m = model.rows.get(self.machine_name)
        state = m.state if m else None
        drained = m.drained if m else None
        if state != self._state_seen or drained != self._drained_seen:
            # A new state or drain flag: `machines show` has the details (who drained it, when, why).
            if self._state_seen is not None and self.info is not None:
                self.run_worker(self._load_info(), group="info", exclusive=True)
            self._state_seen, self._drained_seen = state, drained
        self._draw_info()
        now = time.monotonic()
        if not self.history_loading and (self._dirty and now - self._charts_at >= CHART_EVERY
                                 or now - self._charts_at >= IDLE_REDRAW):
            self._draw_charts()
            self._charts_at = now
            self._dirty = False
        if self._smi_dirty:
            self._smi_dirty = False
            self._draw_smi()
        if model.events.revision != self._ev_rev:
            self._ev_rev = model.events.revision
            self.query_one(EventTable).set_events(model.events.filtered(machine=self.machine_name)[:200])

    def _draw_info(self) -> None:
        m = self.dash.model.rows.get(self.machine_name)
        info = self._info()
        parts: list = [(self.machine_name, "bold")]
        if m is not None:
            style = {"live": "$text-success", "limbo": "$text-warning bold", "dead": "$text-error bold"}
            parts += ["  ", (f"{STATE_GLYPH.get(m.state, '?')} {m.state}", style.get(m.state, ""))]
            parts += [("   heartbeat ", "$text-muted"), (fmt.age(m.age(self.dash.model.clock())) + " ago", "")]
            if m.drained:
                parts += ["   ", ("DRAINED", "$text-warning bold")]
            if m.unhealthy:
                parts += ["   ", ("UNHEALTHY", "$text-error bold")]
            parts += [("   now ", "$text-muted"), (f"CPU {fmt.pct(m.cpu)}%  MEM {fmt.pct(m.mem)}%", "")]
            if m.gpu_count:
                parts += [(f"  GPU {fmt.pct(m.gpu)}%  GMEM {fmt.pct(m.gpu_mem)}%", "")]
            parts += [(f"  DISK {fmt.pct(m.disk)}%  NET {fmt.rate(m.net)}", "")]
        elif self.dash.model.loaded:
            parts += ["  ", ("no longer in the fleet", "$text-error bold")]
        lines = [Content.assemble(*parts)]
        drain = self.info.drain if self.info is not None else None
        if m is not None and m.drained and drain is not None:
            lines.append(self._drain_line(drain))
        if self.info_error:
            lines.append(Content.styled(one_line(self.info_error, 200), "$text-error"))
        if info:
            def t(key: str) -> str:
                return one_line(str(info.get(key) or ""), 80)

            host = "  ·  ".join(x for x in (t("hostname"), t("os"), t("kernel"), t("arch")) if x)
            agent = one_line(str(self.info.agent_version or info.get("agent_version") or ""), 20)
            lines.append(Content.assemble((host, ""), ("   agent ", "$text-muted"), (agent or "-", "")))
            hw = f"{t('cpu_model')} × {info.get('cpu_count', '?')} cores  ·  {fmt.size(info.get('memory_total_bytes'))} RAM"
            gpus = info.get("gpus") or []
            if gpus:
                names = sorted({one_line(str(g.get("name", "")), 60) for g in gpus if isinstance(g, dict)})
                hw += f"  ·  {len(gpus)} × {', '.join(names)}"
                if info.get("gpu_driver"):
                    hw += f" (driver {t('gpu_driver')})"
            lines.append(Content(hw))
            disks = [f"{one_line(str(d.get('mount', '')), 40)} {fmt.size(d.get('total_bytes'))}"
                     for d in info.get("disks") or [] if isinstance(d, dict)]
            labels = fmt.labels({one_line(k, 40): one_line(v, 60) for k, v in self.info.labels.items()})
            lines.append(Content.assemble(("disks ", "$text-muted"), ("  ".join(disks) or "-", ""),
                                          ("   labels ", "$text-muted"), (labels or "-", "")))
        elif not self.info_error:
            lines.append(Content.styled("loading machine info…", "$text-muted"))
        for static in self.query("#info").results(Static):  # none while the screen is torn down
            _show(static, Content("\n").join(lines))

    def _info(self) -> dict:
        """The agent's machine info from ``machines show`` (empty until it is loaded)."""
        return self.info.info if self.info is not None else {}

    def _drain_line(self, drain: Drain) -> Content:
        """Who drained it, when and why, as ``machines show`` says."""
        parts: list = [("drained", "$text-warning bold")]
        by = one_line(drain.by, 80)
        if by:
            parts += [(" by ", "$text-muted"), (by, "bold")]
        if drain.auto:
            parts.append((" (auto-drain)", "$text-muted"))
        try:
            at = parse_iso(drain.at or "")
        except ValueError:
            at = None
        if at is not None:
            ago = fmt.age(self.dash.model.server_now() - at)
            parts += [(" at ", "$text-muted"), (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at)), ""),
                      (f" ({ago} ago)", "$text-muted")]
        reason = one_line(drain.reason, 300)
        if reason:
            parts += [(": ", "$text-muted"), (reason, "")]
        return Content.assemble(*parts)

    def _draw_window(self) -> None:
        narrow = sum(s.content_size.width for s in self.query("#window").results(Static)) < 110
        parts: list = [("window ", "$text-muted")]
        for i, (key, name) in enumerate(WINDOW_NAMES.items(), 1):
            style = "bold reverse $text-accent" if key == self.window else ""
            parts += [(f" {i} ", "$text-muted" if key != self.window else style), ((key if narrow else name) + " ", style),
                      "" if narrow else " "]
        seconds, resolution = WINDOWS[self.window]
        if self.series.ts and not self.history_loading and self.span < seconds - 1:
            # less data than the window: the charts span what there is
            parts.append((f"  only {fmt.age(self.span)} of data, shown in full", "$text-accent"))
        parts.append(("  1-minute rollups" if resolution == "1m" else "  raw samples", "$text-muted"))
        if self.history_loading:
            parts.append(("   loading…", "$text-warning"))
        elif self.load_error:
            parts.append((f"   history unavailable: {one_line(self.load_error, 120)}", "$text-error"))
        else:
            parts.append((f"   {len(self.series)} points", "$text-muted"))
        for static in self.query("#window").results(Static):  # none while the screen is torn down
            _show(static, Content.assemble(*parts))

    def _draw_charts(self) -> None:
        now = self.dash.model.server_now()
        self.series.trim(now)
        self.span = data_span(self.series, now)  # the window, or less when there is less data
        specs = charts(self.series, now, buckets=120, info=self._info(), span=self.span)
        grid = self.query_one("#charts", Grid)
        ids = [(c.id, c.kind) for c in specs]
        window_s = self.span
        if ids != [(cid, w.chart.kind) for cid, w in self.chart_widgets.items()]:
            grid.remove_children()
            self.chart_widgets = {c.id: (StripChart if c.kind == "strips" else MetricChart)(c, window_s, id=f"chart-{c.id}")
                                  for c in specs}
            if specs:
                grid.mount_all(self.chart_widgets.values())
        else:
            for c in specs:
                self.chart_widgets[c.id].show(c, window_s)
        self.query_one("#no-data").set_class(bool(specs), "-hidden")
        self._draw_window()

    def _draw_smi(self) -> None:
        title = self.query_one("#smi-title", Static)
        title.update(Content.assemble(("nvidia-smi", "bold"),
                                      (f"   as sent at {time.strftime('%H:%M:%S', time.gmtime(self.smi_ts))} UTC",
                                       "$text-muted")))
        title.remove_class("-hidden")
        self.query_one("#smi-box").remove_class("-hidden")
        self.query_one(TextPanel).show_text(self.smi_text)

    # ------------------------------------------------------------------ actions

    def action_window(self, window: str) -> None:
        if window == self.window:
            return
        self.window = window
        self.series = Series(WINDOWS[window][0])
        for ts, values in self._live:
            self.series.add(ts, values)
        self.run_worker(self._load_history(), group="history", exclusive=True)

    def action_reload(self) -> None:
        self.run_worker(self._load_history(), group="history", exclusive=True)

    def action_nvidia(self) -> None:
        if self.smi_text:
            self.query_one("#smi-title").scroll_visible(top=True, animate=False)
        else:
            self.notify("This machine has not sent an nvidia-smi screen (no GPUs, or none yet).",
                        title="nvidia-smi", severity="warning")

    def action_gpu_sort(self) -> None:
        self.query_one(GpuSection).cycle_sort()

    def action_events(self) -> None:
        self.dash.open_events(machine=self.machine_name)

    def action_exec(self, scope: str = "machine") -> None:
        self.dash.open_exec([self.machine_name], "this machine", ["Fleet", self.machine_name])

    def action_shell(self) -> None:
        from ..shell import open_shell

        open_shell(self.app, self.machine_name)

    def action_drain(self) -> None:
        name = self.machine_name
        m = self.dash.model.rows.get(name)
        if m is not None and m.drained:
            self.notify(f"{name} is already drained; u undrains it.", title="Drain", severity="warning")
            return

        def answered(reason: str | None) -> None:
            if reason:
                self.run_worker(self._set_drained(True, reason), group="flags")

        question = Content.assemble(("Drain ", ""), (name, "bold"), (": exec skips it until it is undrained. "
                                    "Why? (shown with the flag and kept in its events)", ""))
        self.app.push_screen(ReasonScreen(f"Drain {name}", question, placeholder="e.g. PSU swap, NCCL timeouts",
                                          required="A reason is required: say why it is drained."), answered)

    def action_undrain(self) -> None:
        self.run_worker(self._set_drained(False), group="flags")

    async def _set_drained(self, drain: bool, reason: str = "") -> None:
        name, source = self.machine_name, self.dash.source
        verb = "drain" if drain else "undrain"
        try:
            r = await (source.drain([name], reason) if drain else source.undrain([name]))
        except SourceError as exc:
            self.notify(one_line(exc.reason, 300), title=f"Cannot {verb} {name}", severity="error")
            return
        if r.drained if drain else r.undrained:
            self.notify(f"{name} {verb}ed" + (f": {one_line(reason, 200)}" if drain else ""), title=verb.title())
        else:
            self.notify(f"{name} was {'already' if drain else 'not'} drained.", title=verb.title(),
                        severity="warning")
        if self.is_attached:
            self.run_worker(self._load_info(), group="info", exclusive=True)

    def on_event_table_opened(self, message: EventTable.Opened) -> None:
        message.stop()  # these are this machine's own events


def _show(static: Static, content: Content) -> None:
    """Update ``static`` only if its text changed, with a layout pass only if its height did."""
    old = getattr(static, "_centrality_content", None)
    if old == content:
        return
    static._centrality_content = content  # type: ignore[attr-defined]
    static.update(content, layout=old is None or len(old.split("\n")) != len(content.split("\n")))
