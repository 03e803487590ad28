"""The footer of keys, fitted to the terminal's width.

Textual's ``Footer`` lays every shown key out in one row and lets the ones
past the right edge fall off, so on an 80-column terminal the keys users
look for (`x Exec`, `? Help`) were the ones lost. This footer keeps the
order of the keys but, when they do not all fit, leaves out the least
useful first (``RANK``: the lower, the sooner it goes) and switches to the
compact style. Keys of one rank go together; the palette key (`^p`) is
shown only when there is room left.
"""

from __future__ import annotations

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

#: How much a key is worth keeping, by action (default 50). Back, help and exec stay longest.
RANK = {
    "help": 100, "app.quit": 95, "back": 95, "close": 95, "exec('selection')": 90, "exec('machine')": 90,
    "filter": 80, "open": 75, "toggle_mark": 70, "drain": 65, "undrain": 64, "drain_selection": 65,
    "undrain_selection": 64, "app.events": 60, "events": 60,
    "nvidia": 55, "forget": 45, "sort_next": 40, "sort_reverse": 30,
    "window('1m')": 20, "window('10m')": 20, "window('1h')": 20, "window('24h')": 20,
}


def key_width(key: str, description: str, compact: bool) -> int:
    """Cells a ``FooterKey`` takes: the key and its description with their padding (and margin)."""
    return cell_len(key) + cell_len(description) + (2 if compact else 3)


def choose(keys: list[tuple[str, str, str]], width: int, palette: tuple[str, str] | None) -> tuple[list[int], bool, bool]:
    """Which of ``keys`` (action, key, description) fit in ``width``: their indexes, whether the
    palette key fits too, and whether the compact style is used. Pure."""
    for compact in (False, True):
        items = [(RANK.get(action, 50), i, key_width(k, d, compact)) for i, (action, k, d) in enumerate(keys)]
        pal_width = key_width(*palette, compact) + 1 if palette is not None else 0
        if sum(w for _, _, w in items) + pal_width <= width:
            return list(range(len(keys))), palette is not None, compact
        if not compact:
            continue  # the compact style first, before leaving keys out
        kept, room = [], width
        for rank in sorted({r for r, _, _ in items}, reverse=True):  # the most useful first; keys of one
            group = [i for r, i, _ in items if r == rank]  # rank go together (the four window keys)
            need = sum(w for r, _, w in items if r == rank)
            if need <= room:  # a group that does not fit leaves room for a shorter, less useful one
                kept += group
                room -= need
        return sorted(kept), palette is not None and pal_width <= room, compact
    raise AssertionError("unreachable")


class KeyFooter(Footer):
    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        active = self.screen.active_bindings
        seen: set[str] = set()
        shown = []
        for _, binding, enabled, tooltip in active.values():
            if binding.show and binding.action not in seen:
                seen.add(binding.action)
                shown.append((binding, enabled, tooltip))
        keys = [(b.action, self.app.get_key_display(b), b.description) for b, _, _ in shown]
        palette = None
        pal = active.get(self.app.COMMAND_PALETTE_BINDING) if self.show_command_palette else None
        if pal is not None and self.app.ENABLE_COMMAND_PALETTE:
            palette = (self.app.get_key_display(pal.binding), pal.binding.description)
        kept, with_palette, compact = choose(keys, self.size.width or 200, palette)
        self.compact = compact
        for i in kept:
            binding, enabled, tooltip = shown[i]
            yield FooterKey(binding.key, keys[i][1], binding.description, binding.action, disabled=not enabled,
                            tooltip=tooltip).data_bind(compact=Footer.compact)
        if with_palette and pal is not None:
            yield FooterKey(pal.binding.key, palette[0], palette[1], pal.binding.action, classes="-command-palette",
                            disabled=not pal.enabled, tooltip=pal.binding.tooltip or pal.binding.description)

    def on_resize(self) -> None:
        width = self.size.width
        if width != getattr(self, "_fitted_width", None):
            self._fitted_width = width
            self.call_after_refresh(self.recompose)
