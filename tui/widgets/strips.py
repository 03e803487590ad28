"""Small multiples: one row per line (one per GPU), so eight GPUs that do the
same thing are eight readable rows, not eight lines drawn on top of each other.

Each row is the GPU's label, a block sparkline over the window (8 levels a
cell, one cell per time bucket, scaled to the chart's top) and its latest
value; the last row is the time axis. Text is built from plain strings and
styles (labels come from agents' metric keys: sanitised, never markup)."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from centrality_core.sanitize import one_line

from ..series import Chart, tick_labels, tick_text
from .charts import PALETTE

BLOCKS = " ▁▂▃▄▅▆▇█"


def columns(xs: list[float], ys: list[float], span: float, width: int) -> list[float | None]:
    """``ys`` (at ``xs`` seconds before now) as ``width`` means over the last ``span`` seconds."""
    sums, counts = [0.0] * width, [0] * width
    for x, y in zip(xs, ys):
        col = int((x + span) / span * width)
        if 0 <= col < width:
            sums[col] += y
            counts[col] += 1
        elif col == width:
            sums[-1] += y
            counts[-1] += 1
    return [s / c if c else None for s, c in zip(sums, counts)]


def blocks(values: list[float | None], top: float) -> str:
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        else:
            level = 0 if top <= 0 else round(max(0.0, min(1.0, v / top)) * 8)
            out.append(BLOCKS[max(1, level)])  # a value, even 0, shows as the lowest block
    return "".join(out)


def value_text(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    digits = 0 if abs(v) >= 100 or unit in ("%", "W", "°C") else 1
    return f"{v:.{digits}f} {unit}" if unit != "%" else f"{v:.{digits}f}%"


class StripChart(Static):
    """A ``series.Chart`` of several lines as one strip per line."""

    DEFAULT_CSS = """
    StripChart {
        height: 13; width: 1fr; border: round $panel-lighten-2; padding: 0 1;
        border-title-color: $text; border-subtitle-align: left; border-subtitle-color: $text-muted;
    }
    """

    def __init__(self, chart: Chart, window_s: float, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.chart, self.window_s = chart, window_s
        self.draws = 0
        self._label()

    def show(self, chart: Chart, window_s: float) -> None:
        self.chart, self.window_s = chart, window_s
        self._label()
        self.refresh()

    def _label(self) -> None:
        self.border_title = Content(one_line(self.chart.title, 80))
        self.border_subtitle = Content(f"one row per GPU · 0 to {tick_text(round(self.chart.top(), 1))} "
                                       f"{self.chart.unit}")

    def render(self) -> Content:
        self.draws += 1
        chart, span = self.chart, self.window_s
        width = max(10, self.size.width)
        labels = [one_line(line.label, 8) for line in chart.lines]
        label_w = max((len(x) for x in labels), default=4)
        values = [value_text(line.ys[-1] if line.ys else None, chart.unit) for line in chart.lines]
        value_w = max((len(v) for v in values), default=4)
        spark_w = max(4, width - label_w - value_w - 2)
        top = chart.top()
        parts: list = []
        for i, line in enumerate(chart.lines):
            colour = PALETTE[i % len(PALETTE)]
            parts += [(labels[i].ljust(label_w) + " ", "bold $text"),
                      (blocks(columns(line.xs, line.ys, span, spark_w), top), colour),
                      (" " + values[i].rjust(value_w) + "\n", "$text")]
        axis = [" "] * spark_w
        ticks, names = tick_labels(span, count=max(2, min(5, spark_w // 12)))
        for t, name in zip(ticks, names):  # each label centred on its time (kept inside the strip)
            pos = round((t + span) / span * (spark_w - 1)) - len(name) // 2
            pos = max(0, min(spark_w - len(name), pos))
            if all(c == " " for c in axis[max(0, pos - 1):pos + len(name) + 1]):
                axis[pos:pos + len(name)] = name
        parts.append((" " * (label_w + 1) + "".join(axis)[:spark_w], "$text-muted"))
        return Content.assemble(*parts)
