"""Which files an expertise text names, so they can be checked against the target branch.

A path is a token with a known source/config extension (`api/routes.py`, `schema.sql`) or a
relative path with a folder (`src/components/`). URLs, absolute paths, `~` paths, globs and
version-like tokens are not paths of the repository and are skipped. What this does not check:
whether what the text *says* about a file is still true (only that the file still exists).
"""

from __future__ import annotations

import re

EXTENSIONS = ("py", "pyi", "js", "mjs", "cjs", "ts", "tsx", "jsx", "json", "yaml", "yml", "toml", "ini", "cfg",
              "sql", "md", "rst", "txt", "html", "css", "scss", "go", "rs", "java", "kt", "rb", "php", "c", "h",
              "cc", "cpp", "hpp", "cs", "sh", "lock", "env", "vue", "svelte", "proto", "graphql", "tf")
_TOKEN = re.compile(r"[A-Za-z0-9_.@/\-]+")
_EXT = re.compile(r"\.(" + "|".join(EXTENSIONS) + r")$", re.IGNORECASE)
_VERSION = re.compile(r"^v?\d+(\.\d+)+$")


def mentioned_paths(text: str) -> list[tuple[int, str]]:
    """(line number, path) for each distinct repository path the text names, first mention first."""
    seen: set[str] = set()
    out: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _TOKEN.finditer(line):
            start = match.start()
            if start >= 3 and line[start - 3:start] == "://":
                continue  # the path part of a URL
            if start >= 1 and line[start - 1] in "~$":
                continue
            token = match.group().rstrip(".-").removeprefix("./")
            if _is_path(token) and token not in seen:
                seen.add(token)
                out.append((number, token))
    return out


def _is_path(token: str) -> bool:
    if not token or token.startswith(("/", "@", "-")) or ".." in token.split("/") or _VERSION.match(token):
        return False
    if "://" in token or token.count("/") > 12:
        return False
    if _EXT.search(token):
        return "." != token[0] or "/" in token
    return "/" in token.strip("/") and all(part and not part.startswith(".") for part in token.strip("/").split("/")) \
        and token.endswith("/")
