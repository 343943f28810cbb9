"""Expertise documents (pure): what a project has learned in one domain, in the PRD's YAML shape
(`overview`, `core_files`, `patterns`, `best_practices`, `learned_from_failures`,
`effective_patterns`), every entry carrying where it came from and how much it has been worth."""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any, Literal

import msgspec
import yaml

DOMAINS = ("database", "api", "frontend", "testing", "security", "deployment", "general")
Kind = Literal["core_file", "pattern", "best_practice", "failure", "effective_pattern"]
KINDS: tuple[str, ...] = ("core_file", "pattern", "best_practice", "failure", "effective_pattern")
SECTION = {"core_file": "core_files", "pattern": "patterns", "best_practice": "best_practices",
           "failure": "learned_from_failures", "effective_pattern": "effective_patterns"}
KIND_OF_SECTION = {v: k for k, v in SECTION.items()}
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: 10,000 entries in well under a second
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DOMAIN_OK = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,39}$")


class ExpertiseError(ValueError):
    """A document, seed file or request that cannot be used; the message names the thing and the fix."""


class Origin(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str = ""
    task_id: str = ""
    attempt: int = 0

    def label(self) -> str:
        return f"{self.run_id}/{self.task_id}/{self.attempt}" if self.run_id else "seed"


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One thing worth knowing. `key` identifies it across attempts (near-duplicates share it)."""

    kind: Kind
    key: str
    text: str = ""        # pattern, practice, effective pattern; the purpose of a core file
    path: str = ""        # core_file
    issue: str = ""       # failure: what went wrong
    error: str = ""       # failure: the error signature
    solution: str = ""    # failure: what fixed it ("" while unresolved)
    files: list[str] = []  # files the entry depends on (validated against the target branch)
    origin: Origin = Origin()
    learned_at: str = ""
    confirmed_at: str = ""
    confirmations: int = 1
    score: float = 1.0
    flagged: str = ""     # why validation doubts it; pruned if still true at the next validation

    @property
    def id(self) -> str:
        return entry_id(self.kind, self.key)


class Document(msgspec.Struct, frozen=True, kw_only=True):
    domain: str
    overview: str = ""
    entries: list[Entry] = []


def new_document(domain: str) -> Document:
    return Document(domain=check_domain(domain),
                    overview=f"What YokeFlow agents learned about {domain} in this project; verify against the code.")


@functools.lru_cache(maxsize=16_384)
def entry_id(kind: str, key: str) -> str:
    """Remembered: every version's learning, pruning and validation asks each entry's id again."""
    return hashlib.sha1(f"{kind}\0{key}".encode()).hexdigest()[:12]


def check_domain(domain: Any) -> str:
    if not isinstance(domain, str) or not _DOMAIN_OK.match(domain):
        raise ExpertiseError(f"domain {domain!r} is not a domain name: use lower-case letters, digits, '-' or '_' "
                             f"(e.g. {', '.join(DOMAINS)})")
    return domain


def normalise(text: str) -> str:
    """The key of a free-text entry: case, spacing and punctuation do not make a new entry."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()[:200]


# ------------------------------------------------------------------------------- YAML
def _meta(e: Entry) -> dict[str, Any]:
    meta: dict[str, Any] = {"id": e.id, "origin": e.origin.label(), "learned": e.learned_at,
                            "confirmed": e.confirmed_at, "confirmations": e.confirmations, "score": round(e.score, 3)}
    if e.flagged:
        meta["flagged"] = e.flagged
    return meta


def entry_yaml(e: Entry) -> dict[str, Any]:
    if e.kind == "core_file":
        body: dict[str, Any] = {"path": e.path}
        if e.text:
            body["purpose"] = e.text
    elif e.kind == "failure":
        body = {"issue": e.issue, "error": e.error, "solution": e.solution or "(not solved yet)"}
        if e.files:
            body["files"] = list(e.files)
    else:
        body = {"text": e.text}
        if e.files:
            body["files"] = list(e.files)
    body["meta"] = _meta(e)
    return body


def _dump(data: Any) -> str:
    return yaml.dump(data, sort_keys=False, allow_unicode=True, width=120, Dumper=DUMPER)


_PACK = msgspec.msgpack.Encoder()


@functools.lru_cache(maxsize=16_384)
def _item(packed: bytes) -> str:
    return _dump([entry_yaml(msgspec.msgpack.decode(packed, type=Entry))])


def entry_item(e: Entry) -> str:
    """The entry as its list item in the document's YAML. Remembered: a document is rendered at every
    version and pruned by its entries' lines, and all but one or two entries are those of the version
    before (dumping each again was most of the learner's work)."""
    return _item(_PACK.encode(e))


@functools.lru_cache(maxsize=256)
def _head(domain: str, overview: str) -> str:
    return _dump({"domain": domain, "overview": overview})


def render(doc: Document) -> str:
    """The document as YAML in the PRD's shape (stable: the same document renders the same bytes).
    The bytes are those of dumping the whole mapping at once: a section's block sequence is not
    indented under its key, so it is the concatenation of its entries' items."""
    out = [_head(doc.domain, doc.overview)]
    for kind in KINDS:
        items = [entry_item(e) for e in doc.entries if e.kind == kind]
        out.append(f"{SECTION[kind]}:\n{''.join(items)}" if items else f"{SECTION[kind]}: []\n")
    return "".join(out)


def head_lines(doc: Document) -> int:
    """Lines of the document without its entries: the domain and overview, one line per section."""
    return _head(doc.domain, doc.overview).count("\n") + len(KINDS)


def item_lines(e: Entry) -> int:
    """Lines of the entry's list item (0 for a kind no section renders)."""
    return entry_item(e).count("\n") if e.kind in SECTION else 0


def line_count(doc: Document) -> int:
    """render(doc).count("\\n"), without rendering: a section's line, then its items, or `[]` on it."""
    return head_lines(doc) + sum(item_lines(e) for e in doc.entries)


def _parse_origin(label: Any) -> Origin:
    parts = str(label or "").split("/")
    if len(parts) == 3 and parts[2].isdigit():
        return Origin(run_id=parts[0], task_id=parts[1], attempt=int(parts[2]))
    return Origin()


def parse(text: str, *, source: str = "expertise", domain: str | None = None) -> Document:
    """A document from YAML in the PRD's shape (plain strings are accepted for list items, as in the PRD)."""
    try:
        data = yaml.load(text, Loader=LOADER)
    except yaml.YAMLError as exc:
        raise ExpertiseError(f"{source}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ExpertiseError(f"{source}: expected a mapping with `domain` and the PRD's sections, "
                             f"got {type(data).__name__}")
    unknown = set(data) - {"domain", "overview", *SECTION.values()}
    if unknown:
        raise ExpertiseError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}: an expertise file has domain, "
                             f"overview, {', '.join(SECTION.values())}")
    name = check_domain(data.get("domain", domain))
    if domain is not None and name != domain:
        raise ExpertiseError(f"{source}: its domain is {name!r}, expected {domain!r}")
    overview = data.get("overview") or ""
    if not isinstance(overview, str):
        raise ExpertiseError(f"{source}: overview must be text")
    entries: list[Entry] = []
    for section, kind in KIND_OF_SECTION.items():
        items = data.get(section) or []
        if not isinstance(items, list):
            raise ExpertiseError(f"{source}: {section} must be a list")
        for i, item in enumerate(items):
            entries.append(parse_entry(kind, item, f"{source}: {section}[{i}]"))
    return Document(domain=name, overview=overview, entries=entries)


def _text(item: dict, key: str, where: str, required: bool = False) -> str:
    value = item.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, (str, int, float)):
        raise ExpertiseError(f"{where}.{key} must be text")
    if required and not str(value).strip():
        raise ExpertiseError(f"{where}: `{key}` is required")
    return str(value)


def parse_entry(kind: str, item: Any, where: str) -> Entry:
    if isinstance(item, str):
        item = {"path": item} if kind == "core_file" else {"text": item}
    if not isinstance(item, dict):
        raise ExpertiseError(f"{where}: expected text or a mapping, got {type(item).__name__}")
    meta = item.get("meta") or {}
    if not isinstance(meta, dict):
        raise ExpertiseError(f"{where}.meta must be a mapping")
    files = item.get("files") or []
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ExpertiseError(f"{where}.files must be a list of paths")
    common: dict[str, Any] = dict(
        origin=_parse_origin(meta.get("origin")), learned_at=str(meta.get("learned") or ""),
        confirmed_at=str(meta.get("confirmed") or ""), flagged=str(meta.get("flagged") or ""))
    try:
        common["confirmations"] = max(1, int(meta.get("confirmations", 1)))
        common["score"] = float(meta.get("score", 1.0))
    except (TypeError, ValueError):
        raise ExpertiseError(f"{where}.meta: confirmations and score must be numbers") from None
    if kind == "core_file":
        path = _text(item, "path", where, required=True)
        return Entry(kind="core_file", key=path, path=path, text=_text(item, "purpose", where),
                     files=[path], **common)
    if kind == "failure":
        error = _text(item, "error", where, required=True)
        solution = _text(item, "solution", where)
        return Entry(kind="failure", key=normalise(error), issue=_text(item, "issue", where), error=error,
                     solution="" if solution == "(not solved yet)" else solution, files=list(files), **common)
    text = _text(item, "text", where, required=True)
    return Entry(kind=kind, key=normalise(text), text=text, files=list(files), **common)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- prompt
def for_prompt(docs: list[Document], *, budget_tokens: int = 2000) -> tuple[str, list[str]]:
    """The most useful entries of these documents as prompt text within a token budget (about four
    characters a token), and the ids of the entries given. Flagged entries are left out."""
    ranked = sorted(((d.domain, e) for d in docs for e in d.entries if not e.flagged),
                    key=lambda de: de[1].confirmed_at, reverse=True)  # recent first among equals
    ranked.sort(key=lambda de: (-de[1].score, -de[1].confirmations))
    budget = budget_tokens * 4
    lines: list[str] = []
    given: list[str] = []
    used = 0
    for domain, e in ranked:
        line = f"- [{domain}] {describe(e)}"
        if used + len(line) + 1 > budget:
            continue
        lines.append(line)
        given.append(e.id)
        used += len(line) + 1
    return "\n".join(lines), given


def describe(e: Entry) -> str:
    if e.kind == "core_file":
        return f"core file `{e.path}`" + (f": {e.text}" if e.text else "")
    if e.kind == "failure":
        fix = f" Fix that worked: {e.solution}" if e.solution else " (no fix found yet)"
        return f"known failure: {e.issue} — error `{e.error}`.{fix}"
    label = {"pattern": "pattern", "best_practice": "practice", "effective_pattern": "works well"}[e.kind]
    return f"{label}: {e.text}"
