"""``storage``: what metric history takes, per tier, and where it is heading."""

from __future__ import annotations

import time

from centrality_core import timefmt

from .dispatch import Ctx, request

DAY = 86400.0


def report(usage: dict, retention: dict[str, float], max_store_size: int, history: dict, now: float) -> dict:
    """The ``storage`` answer from ``Chunks.usage()`` (pure).

    Per tier: bytes, values, bytes per value, oldest and newest sample, the rate
    it grows at (bytes of its chunks over the time they span, once that is over
    an hour) and the bytes it will hold once full at its retention. The bound
    (``max_store_size``, or its default) is on what the store takes on disk.
    """
    tiers = []
    total_rate = 0.0
    rate_known = True
    for name in ("raw", "1m", "1h"):
        u = usage["tiers"].get(name, {"chunks": 0, "bytes": 0, "values": 0, "oldest": None, "newest": None})
        span = (u["newest"] - u["oldest"]) if u["oldest"] is not None else 0.0
        rate = u["bytes"] / span * DAY if span >= 3600 else None
        if rate is None:
            rate_known = False
        else:
            total_rate += rate
        keep = retention[name]
        tiers.append({
            "tier": name, "retention_s": keep, "chunks": u["chunks"], "bytes": u["bytes"], "values": u["values"],
            "bytes_per_value": round(u["bytes"] / u["values"], 3) if u["values"] else None,
            "oldest": timefmt.iso(u["oldest"]), "newest": timefmt.iso(u["newest"]),
            "bytes_per_day": round(rate) if rate is not None else None,
            "projected_bytes": round(rate * keep / DAY) if rate is not None else None,
        })
    used = sum(t["bytes"] for t in tiers)
    projected = sum(t["projected_bytes"] or 0 for t in tiers) if rate_known else None
    disk = usage["disk_bytes"]
    days_left = None
    if max_store_size and total_rate:
        days_left = round(max(0.0, max_store_size - disk) / total_rate, 1)
    return {
        "tiers": tiers,
        "chunk_bytes": used,
        "pending": {k: {**v, "oldest": timefmt.iso(v["oldest"])} for k, v in usage["pending"].items()},
        "disk_bytes": usage["disk_bytes"],
        "max_store_size": max_store_size or None,
        "projected_bytes": projected,
        "days_until_bound": days_left,
        "over_bound": bool(max_store_size) and disk > max_store_size,
        "history": history,
        "at": timefmt.iso(now),
    }


@request("storage")
async def storage(ctx: Ctx, ns) -> dict:
    """Metric history on disk: bytes and bytes per value per tier, oldest sample, projection."""
    svc = ctx.services
    usage = await svc.db(svc.chunks.usage)
    s = svc.settings
    return report(usage, {"raw": s.raw_retention, "1m": s.rollup_retention, "1h": s.hour_retention},
                  svc.compactor.bound or 0, svc.compactor.status(), time.time())
