"""`yokeflow projections rebuild` — drop the PostgreSQL projections and replay the log into them."""

from __future__ import annotations

import argparse
import asyncio

from yokeflow.commands.runtime import _config, _state_arg
from yokeflow.system import open_endpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("projections", help="the PostgreSQL read models built from the event log")
    psub = p.add_subparsers(dest="projections_cmd", metavar="SUBCOMMAND", required=True)
    r = psub.add_parser("rebuild", help="replay the whole log into fresh tables and swap them in")
    _state_arg(r)
    r.set_defaults(func=lambda a: asyncio.run(cmd_rebuild(a)))


async def cmd_rebuild(args: argparse.Namespace) -> int:
    from services.ledger.service import rebuild

    async with open_endpoint(_config(), args.state_dir) as endpoint:
        bus = await endpoint.bus()
        try:
            result = await rebuild(bus, endpoint.database_url)
        finally:
            await bus.close()
    print(f"projections rebuilt from {result['events']} events (position {result['position']})")
    return 0
