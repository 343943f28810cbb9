"""Branch and worktree names: sanitised so a title can never become a path or a bad ref."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
BRANCH_KINDS = ("task", "epic", "lane")


def slugify(text: str, max_len: int = 40) -> str:
    """Lower-case [a-z0-9-] only, no leading/trailing '-', at most max_len characters, never empty."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    slug = _NOT_SLUG.sub("-", ascii_text.lower()).strip("-")
    slug = slug[:max(1, max_len)].rstrip("-")
    return slug or "x"


def branch_name(kind: str, ident: str, title: str) -> str:
    """'task/<id>-<slug>' or 'epic/<id>-<slug>'; the id is sanitised the same way as the title."""
    if kind not in BRANCH_KINDS:
        raise ValueError(f"branch kind must be one of {BRANCH_KINDS}, not {kind!r}")
    ident_slug = slugify(ident, max_len=24)
    if not str(ident).isascii():  # a CJK id slugs to almost nothing: its hash keeps branches apart
        ident_slug = f"{ident_slug}-{hashlib.sha1(str(ident).encode()).hexdigest()[:8]}"
    title_slug = slugify(title) if str(title).strip() else ""
    return f"{kind}/{ident_slug}-{title_slug}" if title_slug and title_slug != "x" else f"{kind}/{ident_slug}"


def worktree_dir_name(name: str) -> str:
    """A worktree's folder name under .worktrees/: one sanitised path component."""
    return slugify(name, max_len=64)
