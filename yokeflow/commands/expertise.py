"""`yokeflow expertise show|history|export|import|rollback|validate` — what a project has learned,
per domain, as versioned YAML documents in the PRD's shape."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path

import msgspec

from shared.commands import project_id_for
from shared.expertise import ExpertiseError, check_domain, store
from shared.gitops.repo import BranchPaths
from yokeflow.commands.runtime import _config, _state_arg
from yokeflow.errors import CliError
from yokeflow.system import open_endpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("expertise", help="what a project has learned, per domain")
    esub = p.add_subparsers(dest="expertise_cmd", metavar="SUBCOMMAND", required=True)

    def add(name: str, help_: str, handler) -> argparse.ArgumentParser:
        c = esub.add_parser(name, help=help_)
        c.add_argument("--repo", type=Path, default=Path("."), help="the project's repository (default: here)")
        _state_arg(c)
        c.set_defaults(func=lambda a: asyncio.run(_with_errors(handler, a)))
        return c

    add("show", "a domain's expertise as YAML (or --json)", cmd_show).add_argument("domain")
    esub.choices["show"].add_argument("--json", action="store_true", help="the document as JSON")
    add("history", "a domain's versions", cmd_history).add_argument("domain")
    add("export", "every domain's expertise as <DIR>/<domain>.yaml", cmd_export).add_argument("dir", type=Path)
    add("import", "seed the project from <DIR>/<domain>.yaml files", cmd_import).add_argument("dir", type=Path)
    r = add("rollback", "a new version equal to an earlier one, byte for byte", cmd_rollback)
    r.add_argument("domain")
    r.add_argument("version", type=int)
    v = add("validate", "check a domain's entries against the target branch (flag, then prune)", cmd_validate)
    v.add_argument("domain")
    v.add_argument("--branch", default="", help="target branch (default: the repository's current branch)")


async def _with_errors(handler, args: argparse.Namespace) -> int:
    try:
        return await handler(args)
    except ExpertiseError as exc:
        raise CliError(str(exc), code=2) from None


def _project(args: argparse.Namespace) -> str:
    repo = args.repo.expanduser().resolve()
    if not repo.is_dir():
        raise CliError(f"--repo {repo} is not a folder: give the project's repository", code=2)
    return project_id_for(repo)


async def _session(args: argparse.Namespace):
    return open_endpoint(_config(), args.state_dir, need_database=False)


async def _latest_or_fail(bus, project: str, domain: str):
    update = await store.latest(bus, project, check_domain(domain))
    if update is None:
        known = await store.domains(bus, project)
        raise ExpertiseError(f"no expertise for domain {domain!r} in this project; domains with expertise: "
                             f"{', '.join(known) or 'none yet'}")
    return update


async def cmd_show(args: argparse.Namespace) -> int:
    project = _project(args)
    async with await _session(args) as endpoint:
        bus = await endpoint.bus()
        try:
            update = await _latest_or_fail(bus, project, args.domain)
        finally:
            await bus.close()
    if args.json:
        doc = store.document_of(update, args.domain)
        print(json.dumps({"project_id": project, "domain": update.domain, "version": update.version,
                          "lines": update.lines, "document": msgspec.to_builtins(doc)}, indent=2))
    else:
        print(update.yaml(), end="")
    return 0


async def cmd_history(args: argparse.Namespace) -> int:
    project = _project(args)
    async with await _session(args) as endpoint:
        bus = await endpoint.bus()
        try:
            await _latest_or_fail(bus, project, args.domain)
            versions = await store.history(bus, project, args.domain)
        finally:
            await bus.close()
    for v in versions:
        entries = len(v.document.entries) if v.document else 0
        print(f"v{v.version:<4} {v.occurred_at[:19]}  {v.reason or 'learned':<9} {v.lines:>5} lines "
              f"{entries:>4} entries  {v.source}")
    return 0


async def cmd_export(args: argparse.Namespace) -> int:
    project = _project(args)
    async with await _session(args) as endpoint:
        bus = await endpoint.bus()
        try:
            updates = [await store.latest(bus, project, d) for d in await store.domains(bus, project)]
        finally:
            await bus.close()
    args.dir.mkdir(parents=True, exist_ok=True)
    for u in updates:
        if u is not None:
            (args.dir / f"{u.domain}.yaml").write_text(u.yaml())
    print(f"exported {len(updates)} domain(s) to {args.dir}")
    return 0


async def cmd_import(args: argparse.Namespace) -> int:
    project = _project(args)
    now = datetime.now(timezone.utc).isoformat()
    async with await _session(args) as endpoint:
        bus = await endpoint.bus()
        try:
            versions = await store.import_folder(bus, project, args.dir, max_lines=_config().learning.expertise_max_lines,
                                                 now=now)
        finally:
            await bus.close()
    for domain, version in versions.items():
        print(f"{domain}: version {version}")
    return 0


async def cmd_rollback(args: argparse.Namespace) -> int:
    project = _project(args)
    async with await _session(args) as endpoint:
        bus = await endpoint.bus()
        try:
            back = await store.rollback(bus, project, check_domain(args.domain), args.version)
        finally:
            await bus.close()
    print(f"{back.domain}: version {back.version} is version {args.version} again")
    return 0


async def cmd_validate(args: argparse.Namespace) -> int:
    project = _project(args)
    repo = args.repo.expanduser().resolve()
    branch = args.branch or _current_branch(repo)
    with await asyncio.to_thread(BranchPaths, repo, branch) as paths:
        if paths.empty:
            raise CliError(f"branch {branch!r} of {repo} has no files (or does not exist): pass --branch", code=2)
        async with await _session(args) as endpoint:
            bus = await endpoint.bus()
            try:
                await _latest_or_fail(bus, project, args.domain)
                report = await store.validate_domain(bus, project, args.domain, paths.exists,
                                                     now=datetime.now(timezone.utc).isoformat(), branch=branch,
                                                     max_lines=_config().learning.expertise_max_lines)
            finally:
                await bus.close()
    print(json.dumps(report, indent=2))
    return 0


def _current_branch(repo: Path) -> str:
    head = (repo / ".git" / "HEAD")
    text = head.read_text().strip() if head.is_file() else ""
    return text.removeprefix("ref: refs/heads/") if text.startswith("ref: ") else "main"
