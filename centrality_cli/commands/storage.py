"""``centrality storage``: what metric history takes on disk, per tier."""

from __future__ import annotations

import typer

from centrality_core import durations

from .. import output
from . import JSON, operator_call


def size(n: float | None) -> str:
    """Bytes for people, in powers of 1000 (as disks are sold)."""
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def storage(ctx: typer.Context, json: bool = JSON) -> None:
    """Metric history per tier: bytes, bytes per value, oldest sample, growth and projection."""
    s = operator_call(ctx, "storage").data
    if json:
        return output.print_json(s)
    output.table(["tier", "keeps", "chunks", "size", "B/value", "oldest", "per day", "when full"], [
        (t["tier"], durations.format(t["retention_s"]), t["chunks"], size(t["bytes"]),
         "-" if t["bytes_per_value"] is None else f"{t['bytes_per_value']:.2f}", t["oldest"] or "-",
         size(t["bytes_per_day"]), size(t["projected_bytes"]))
        for t in s["tiers"]])
    p = s["pending"]
    lines = [f"not compacted yet: {p['raw_batches']['rows']} raw batches ({size(p['raw_batches']['bytes'])}), "
             f"{p['minutes']['rows']} minutes ({size(p['minutes']['bytes'])})",
             f"on disk: {size(s['disk_bytes'])}; projected at full retention: {size(s['projected_bytes'])}"]
    h = s["history"]
    if s["max_store_size"]:
        left = s["days_until_bound"]
        source = h.get("bound_source")
        why = (" (max_store_size)" if source == "max_store_size"
               else f" ({source}; max_store_size sets another)" if source else "")
        lines.append(f"bound: {size(s['max_store_size'])} on disk{why}"
                     + (f", reached in {left} days at the current rate" if left is not None else ""))
    if h["bound_dropped_chunks"]:
        lines.append(f"past max_store_size: the {h['bound_dropped_chunks']} oldest chunks "
                     f"({size(h['bound_dropped_bytes'])}) were dropped")
        for tier, x in (h.get("bound_dropped_tiers") or {}).items():
            lines.append(f"  {tier}: {x['chunks']} chunks ({size(x['bytes'])}), samples {x['oldest']} to {x['newest']}")
    if h.get("bound_unmet"):
        lines.append(f"above max_store_size with only the newest data left (not compacted yet, each machine's "
                     "newest chunks): raise max_store_size")
    if h["error"]:
        lines.append(f"history pass failing: {h['error']}")
    for line in lines:
        output.console().print(output.escape(line))


def register(app: typer.Typer) -> None:
    app.command("storage")(storage)
