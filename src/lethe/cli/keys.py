"""`lethe keys rotate` (encryption keys) and `lethe keys create|list|revoke` (API keys)."""

from __future__ import annotations

from typing import Annotated

import typer

from lethe.cli.options import JsonOpt, NowOpt, PolicyOpt, open_runtime, settings
from lethe.cli.output import emit_json, stdout, table
from lethe.defaults import API_ROLES as ROLES
from lethe.defaults import ORG

app = typer.Typer(rich_markup_mode=None, no_args_is_help=True,
                  help="API keys, key-encryption keys and subject data keys.")


@app.command("rotate")
def rotate(ctx: typer.Context,
           batch: Annotated[int, typer.Option("--batch", min=1, help="Keys per transaction")]
           = 500,
           policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """New KEK; rewrap every data key (data untouched); retire the old KEK. Resumable."""
    from lethe.commands.keys import rotate_kek

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        result = rotate_kek(rt, batch)
    if s.json:
        emit_json(result)
    else:
        stdout.print(f"rotated to KEK {result['kek']}; rewrapped {result['rewrapped']} "
                     "data keys")


@app.command("create")
def create(ctx: typer.Context,
           role: Annotated[str, typer.Option("--role", help=" | ".join(ROLES))],
           workspace: Annotated[str, typer.Option(
               "--workspace", help=f"A workspace id, or {ORG} for the organization")],
           name: Annotated[str, typer.Option("--name", help="What the key is for")] = "",
           policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Create an API key. Its secret is shown once, here; lethe keeps only a hash."""
    from lethe.commands.keys import create_api_key

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        issued = create_api_key(rt, role, workspace, name)
    if s.json:
        emit_json(issued.key.as_dict() | {"token": issued.token})
    else:
        stdout.print(f"API key {issued.key.id} ({role}, {workspace}) — shown once, "
                     "store it now:", markup=False)
        stdout.print(issued.token, markup=False, highlight=False, soft_wrap=True)


@app.command("list")
def list_keys(ctx: typer.Context,
              all_: Annotated[bool, typer.Option("--all", help="Include revoked keys")]
              = False,
              policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """List API keys (ids, roles, workspaces, last use; never secrets)."""
    from lethe.commands.keys import list_api_keys

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        keys = list_api_keys(rt, include_revoked=all_)
    rows = [k.as_dict() for k in keys]
    if s.json:
        emit_json({"keys": rows})
    else:
        table("API keys", ["id", "role", "workspace", "name", "created", "last used",
                           "expires", "revoked"],
              [[r["id"], r["role"], r["workspace"], r["name"], r["created_at"],
                r["last_used_at"] or "", r["expires_at"] or "", r["revoked_at"] or ""]
               for r in rows])


@app.command("revoke")
def revoke(ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="Key id")],
           policy: PolicyOpt = None, json_out: JsonOpt = False, now: NowOpt = None) -> None:
    """Revoke an API key (and the impersonation tokens it issued), at once."""
    from lethe.commands.keys import revoke_api_key

    s = settings(ctx, policy, json_out, now)
    with open_runtime(s) as rt:
        key = revoke_api_key(rt, key_id)
    if s.json:
        emit_json({"id": key.id, "revoked": True})
    else:
        stdout.print(f"API key {key.id} revoked")
