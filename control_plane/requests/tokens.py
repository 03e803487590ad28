"""``token create|ls|revoke``: join tokens for new agents."""

from __future__ import annotations

import time

from centrality_core import durations, timefmt

from .dispatch import Ctx, request


def _create_args(p):
    p.add_argument("--ttl", default="1h", help="how long the token is valid (default 1h)")
    p.add_argument("--uses", type=int, default=1, help="how many agents may join with it")
    p.add_argument("--address", help="HOST:PORT agents should connect to "
                                     "(default: the control plane's advertised address)")


@request("token create", writes=True, args=_create_args)
async def token_create(ctx: Ctx, ns) -> dict:
    """Make a join string for `centrality agent join`."""
    out = await ctx.services.auth.create_token(ttl=durations.parse(ns.ttl), uses=ns.uses,
                                         actor=ctx.actor, address=ns.address or ctx.services.endpoint.advertise)
    out["expires_at"] = timefmt.iso(out["expires_at"])
    return out


@request("token ls")
async def token_ls(ctx: Ctx, ns) -> list[dict]:
    """List join tokens (never their secrets)."""
    rows = await ctx.services.db(ctx.services.store.list_tokens)
    return [{"id": r["id"], "created_at": timefmt.iso(r["created_at"]),
             "created_by": r["created_by"], "expires_at": timefmt.iso(r["expires_at"]),
             "uses": r["uses"], "max_uses": r["max_uses"],
             "revoked_at": timefmt.iso(r["revoked_at"])} for r in rows]


def _revoke_args(p):
    p.add_argument("id")


@request("token revoke", writes=True, args=_revoke_args)
async def token_revoke(ctx: Ctx, ns) -> dict:
    """Revoke a join token before it expires."""
    await ctx.services.db(ctx.services.store.revoke_token, ns.id, time.time())
    return {"id": ns.id, "revoked": True}
