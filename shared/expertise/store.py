"""Expertise documents in the log: each domain of a project is an aggregate whose `ExpertiseUpdated`
events are its versions. Reading, appending a version (with optimistic concurrency), importing,
rolling back and validating, for the learner, the executor, the CLI and the gateway alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import msgspec

from shared import events as ev
from shared.bus import Bus
from shared.expertise.curate import learn, prune, validate
from shared.expertise.model import Document, Entry, ExpertiseError, check_domain, line_count, new_document, parse


def _probe(project_id: str, domain: str) -> ev.ExpertiseUpdated:
    return ev.ExpertiseUpdated(project_id=project_id, aggregate_id=domain, domain=domain, version=0)


async def history(bus: Bus, project_id: str, domain: str) -> list[ev.ExpertiseUpdated]:
    subject = bus.aggregate_filter(_probe(project_id, check_domain(domain)))
    return [d.event async for d in bus.read([subject]) if isinstance(d.event, ev.ExpertiseUpdated)]


async def latest(bus: Bus, project_id: str, domain: str) -> ev.ExpertiseUpdated | None:
    subject = bus.subject_of(_probe(project_id, check_domain(domain)))
    found = await bus.last_event(subject, remembered=True)
    return found if isinstance(found, ev.ExpertiseUpdated) else None


async def domains(bus: Bus, project_id: str) -> list[str]:
    # from the subjects alone (a domain is its aggregate's id, already a subject token): replaying every
    # version of every document grew with each version
    subject = bus.type_filter("ExpertiseUpdated", project=ev.subject_token(project_id), aggregate="expertise")
    parts = (bus.subjects.parse_event(s) for s in await bus.subjects_in(subject))
    return sorted({p.aggregate_id for p in parts if p is not None})


def document_of(update: ev.ExpertiseUpdated | None, domain: str) -> Document:
    if update is None:
        return new_document(domain)
    if update.document is not None:
        return update.document
    return parse(update.content, domain=domain) if update.content.lstrip().startswith("domain:") else new_document(domain)


Change = Callable[[Document], Document]


async def append(bus: Bus, project_id: str, domain: str, change: Change, *, reason: ev.ExpertiseReason, source: str,
                 msg_id: str, max_lines: int, cause: ev.Event | None = None, given: dict[str, int] | None = None,
                 applied: Callable[[list[ev.ExpertiseUpdated]], bool] | None = None) -> int:
    """Apply `change` to the domain's latest document and append the result as a new version, unless
    nothing changed or `applied(history)` says this change is already in. Returns the version that
    holds it. Two writers never lose each other's change (optimistic concurrency on the aggregate).
    Without `applied` only the latest version is read (the whole history grows with every version)."""
    outcome = {"version": 0}

    def decide(events: list[ev.Event]) -> list[tuple[ev.Event, str]]:
        updates = [e for e in events if isinstance(e, ev.ExpertiseUpdated)]
        current = updates[-1] if updates else None
        outcome["version"] = current.version if current else 0
        if applied is not None and applied(updates):
            return []
        before = document_of(current, domain)
        changed = change(before)
        if current is not None and changed == before:
            return []  # most validations after a merge: nothing to prune or render again
        doc = prune(changed, max_lines, given=given)
        if current is not None and current.document == doc:
            return []
        version = outcome["version"] + 1
        outcome["version"] = version
        fields: dict[str, Any] = dict(aggregate_id=domain, domain=domain, version=version, lines=line_count(doc),
                                      document=doc, reason=reason, source=source)
        update = (cause.caused(ev.ExpertiseUpdated, **fields) if cause is not None
                  else ev.ExpertiseUpdated(project_id=project_id, **fields))
        return [(update, msg_id)]

    probe = _probe(project_id, domain)
    await bus.append(decide, probe, latest=None if applied is not None else bus.subject_of(probe))
    return outcome["version"]


async def import_folder(bus: Bus, project_id: str, folder: Path, *, max_lines: int, now: str) -> dict[str, int]:
    """Seed a project from `<folder>/<domain>.yaml` files: every file is checked first, and nothing
    is stored unless all of them are valid."""
    files = sorted(p for p in Path(folder).glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    if not Path(folder).is_dir():
        raise ExpertiseError(f"{folder} is not a folder: give the folder `yokeflow expertise export` wrote")
    if not files:
        raise ExpertiseError(f"{folder} holds no <domain>.yaml files")
    docs = [parse(p.read_text(), source=str(p), domain=p.stem) for p in files]
    out: dict[str, int] = {}
    for path, doc in zip(files, docs):
        seeded = [e if e.learned_at else msgspec.structs.replace(e, learned_at=now, confirmed_at=e.confirmed_at or now)
                  for e in doc.entries]
        out[doc.domain] = await append(
            bus, project_id, doc.domain, lambda cur, d=doc, s=seeded: _with_overview(learn(cur, s, now=now), d.overview),
            reason="import", source=str(path), msg_id=f"{project_id}:{doc.domain}:import:{now}", max_lines=max_lines)
    return out


def _with_overview(doc: Document, overview: str) -> Document:
    return msgspec.structs.replace(doc, overview=overview) if overview else doc


async def rollback(bus: Bus, project_id: str, domain: str, version: int) -> ev.ExpertiseUpdated:
    """A new version whose YAML is `version`'s, byte for byte."""
    versions = await history(bus, project_id, domain)
    if not versions:
        raise ExpertiseError(f"no expertise for domain {domain!r} in project {project_id}: "
                             f"`yokeflow expertise show` lists the domains that have some")
    target = next((v for v in versions if v.version == version), None)
    if target is None:
        raise ExpertiseError(f"domain {domain!r} has no version {version}: it has versions "
                             f"1..{versions[-1].version} (`yokeflow expertise history {domain}`)")
    latest_version = versions[-1]
    back = latest_version.caused(ev.ExpertiseUpdated, aggregate_id=domain, domain=domain,
                                 version=latest_version.version + 1, lines=target.lines, content=target.content,
                                 document=target.document, reason="rollback", source=f"version {version}")
    seq = await bus.aggregate_seq(back)
    await bus.publish(back, msg_id=f"{project_id}:{domain}:{back.version}:rollback", expected_seq=seq)
    return back


async def validate_domain(bus: Bus, project_id: str, domain: str, exists: Callable[[str], bool], *, now: str,
                          branch: str, max_lines: int, pending: Callable[[Entry], bool] | None = None) -> dict:
    """Check the domain's entries against the target branch: flag, or prune what was flagged before
    (entries `pending` says come from unmerged work are left alone)."""
    report: dict = {}

    def change(doc: Document) -> Document:
        checked, found = validate(doc, exists, now=now, branch=branch, pending=pending)
        report.update(found)
        return checked

    version = await append(bus, project_id, domain, change, reason="validate", source=branch,
                           msg_id=f"{project_id}:{domain}:validate:{now}", max_lines=max_lines)
    return {"domain": domain, "version": version, "branch": branch,
            **{k: v for k, v in report.items() if k != "checked"}, "checked": len(report.get("checked", []))}


__all__ = ["append", "document_of", "domains", "history", "import_folder", "latest", "line_count", "rollback",
           "validate_domain"]
