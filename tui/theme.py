"""Two themes with the same meaning of colour: green live, amber limbo and
drained, red dead and unhealthy; glyphs carry the same meaning without colour.
Both keep text at a readable contrast on their own background, so the
dashboard reads the same in a dark or a light terminal (Ctrl+T switches)."""

from __future__ import annotations

from textual.theme import Theme

DARK = Theme(
    name="centrality-dark", dark=True,
    primary="#3A7BD5", secondary="#7C6FE0", accent="#F2B134",
    success="#3DD68C", warning="#F2B134", error="#FF5F6D",
    foreground="#E6EAF0", background="#0F1318", surface="#151A21", panel="#222A35",
)

LIGHT = Theme(
    name="centrality-light", dark=False,
    primary="#1F5FBF", secondary="#6639BA", accent="#8A5A00",
    success="#17753A", warning="#9A5B00", error="#C4162A",
    foreground="#1B1F24", background="#FFFFFF", surface="#F5F7FA", panel="#E3E8EF",
)

THEMES = {"dark": DARK, "light": LIGHT}
