"""``keys ls|add|revoke``: who may log in, and as what."""

from __future__ import annotations

from centrality_core import timefmt
from centrality_core.errors import Conflict

from .dispatch import Ctx, request


def key_json(row: dict) -> dict:
    return {
        "name": row["name"], "role": row["role"], "fingerprint": row["fingerprint"],
        "created_at": timefmt.iso(row["created_at"]), "created_by": row["created_by"],
        "revoked_at": timefmt.iso(row["revoked_at"]),
    }


def _ls_args(p):
    p.add_argument("--all", action="store_true", help="include revoked keys")


@request("keys ls", args=_ls_args)
async def keys_ls(ctx: Ctx, ns) -> list[dict]:
    """List the keys allowed to log in."""
    rows = await ctx.services.db(ctx.services.store.list_keys, ns.all)
    return [key_json(r) for r in rows]


def _add_args(p):
    p.add_argument("--role", required=True, choices=["operator", "viewer"])
    p.add_argument("name")
    p.add_argument("public_key", nargs="+", help="the public key, as in a .pub file")


@request("keys add", writes=True, args=_add_args)
async def keys_add(ctx: Ctx, ns) -> dict:
    """Let a person in with their public key, as an operator or a viewer."""
    row = await ctx.services.auth.add_key(name=ns.name, role=ns.role,
                                    public_key=" ".join(ns.public_key), actor=ctx.actor)
    return key_json(row)


def _revoke_args(p):
    p.add_argument("key", help="key name or SHA256 fingerprint")


@request("keys revoke", writes=True, args=_revoke_args)
async def keys_revoke(ctx: Ctx, ns) -> list[dict]:
    """Revoke a key; its connections are closed at once."""
    if ns.key == ctx.conn.fingerprint or ns.key == ctx.conn.key_name:
        raise Conflict("refusing to revoke the key this request was made with")
    rows = await ctx.services.auth.revoke_key(ns.key)
    return [key_json(r) for r in rows]
