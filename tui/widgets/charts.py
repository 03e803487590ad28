"""Time-series charts (textual-plotext) and the machine's text panels."""

from __future__ import annotations

from rich.text import Text
from textual.content import Content
from textual.widgets import Static
from textual_plotext import PlotextPlot

from centrality_core.sanitize import for_terminal, one_line

from ..series import Chart, nice_axis, tick_labels, tick_text


#: Line colours (Tableau 10): distinguishable, and readable on dark and light backgrounds.
PALETTE = ("#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F", "#EDC948", "#B07AA1", "#FF9DA7",
           "#9C755F", "#BAB0AC")


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


class MetricChart(PlotextPlot):
    """One ``series.Chart``: lines over a window that ends now (x in seconds ago)."""

    DEFAULT_CSS = """
    MetricChart {
        height: 13; width: 1fr; border: round $panel-lighten-2;
        border-title-color: $text; border-subtitle-align: left; border-subtitle-color: $text-muted;
    }
    """

    def __init__(self, chart: Chart, window_s: float, *, id: str | None = None) -> None:
        """``window_s``: the seconds the x axis spans (the window, or the data there is)."""
        super().__init__(id=id)
        self.chart = chart
        self.window_s = window_s
        self.draws = 0
        self._label()

    def show(self, chart: Chart, window_s: float) -> None:
        self.chart, self.window_s = chart, window_s
        self._label()
        self.refresh()

    def _label(self) -> None:
        """Title on the top border; the legend, in the lines' colours, on the bottom one."""
        self.border_title = Content(one_line(self.chart.title, 80))
        lines = self.chart.lines
        if len(lines) > 1:
            parts: list = []
            for i, line in enumerate(lines):
                parts += [("━ ", PALETTE[i % len(PALETTE)]), (one_line(line.label, 24) + " ", "")]
            self.border_subtitle = Content.assemble(*parts)
        else:
            self.border_subtitle = None

    def render(self):
        plt = self.plt
        plt.clear_figure()
        chart = self.chart
        top = chart.top()
        for i, line in enumerate(chart.lines):
            plt.plot(line.xs, line.ys, marker="braille", color=_rgb(PALETTE[i % len(PALETTE)]))
        plt.xlim(-self.window_s, 0)
        plt.ylim(0, top)
        # Round ticks (0 25 50 75 100), not plotext's own (100.0 83.3 66.7 ...), at most one per 2 rows.
        rows = max(2, self.size.height - 4)
        yticks = [t for t in nice_axis(top, most=max(2, min(5, rows // 2 + 2)))[1] if t <= top + 1e-9]
        plt.yticks(yticks, [tick_text(t) for t in yticks])
        ticks, labels = tick_labels(self.window_s)
        plt.xticks(ticks, labels)
        self.draws += 1
        return super().render()


class TextPanel(Static):
    """Agent text (nvidia-smi): sanitised, never wrapped, never parsed as markup."""

    DEFAULT_CSS = """
    TextPanel { height: auto; width: auto; min-width: 100%; padding: 0 1; }
    """

    def show_text(self, text: str) -> None:
        self.update(Text(for_terminal(text).expandtabs(4).rstrip("\n"), no_wrap=True, overflow="crop"))
