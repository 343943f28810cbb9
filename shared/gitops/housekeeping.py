"""Keeping `.worktrees/` ignored and copying `.worktreeinclude` files into new worktrees."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path, PurePosixPath

from dulwich.objects import Blob, Tree
from dulwich.repo import Repo

from shared.gitops.refwrite import set_ref
from shared.gitops.repo import branch_ref, require_branch

log = logging.getLogger(__name__)
IGNORE_COMMIT_AUTHOR = "YokeFlow <worktrees@yokeflow.dev>"


def _ignores(text: bytes, dirname: str) -> bool:
    wanted = {dirname, dirname + "/", "/" + dirname, "/" + dirname + "/"}
    return any(line.strip().decode(errors="replace") in wanted for line in text.splitlines())


def ensure_worktrees_ignored(repo: Repo, target: str, dirname: str) -> None:
    """`.git/info/exclude` always ignores the worktrees folder (takes effect at once, dirties nothing);
    the target branch's `.gitignore` gets the line too, committed on that branch, so every clone agrees."""
    exclude = Path(repo.controldir()) / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    current = exclude.read_bytes() if exclude.exists() else b""
    if not _ignores(current, dirname):
        sep = b"" if not current or current.endswith(b"\n") else b"\n"
        exclude.write_bytes(current + sep + f"/{dirname}/\n".encode())
    from shared.gitops.merge import _follow_checkouts, make_commit  # merge imports this module's siblings

    for _ in range(10):
        tip = require_branch(repo, target)
        tree: Tree = repo[repo[tip].tree]
        old = repo[tree[b".gitignore"][1]].data if b".gitignore" in tree else b""
        if _ignores(old, dirname):
            return
        sep = b"" if not old or old.endswith(b"\n") else b"\n"
        blob = Blob.from_string(old + sep + f"{dirname}/\n".encode())
        new_tree = Tree()
        for item in tree.iteritems():
            new_tree.add(item.path, item.mode, item.sha)
        new_tree.add(b".gitignore", 0o100644, blob.id)
        repo.object_store.add_objects([(blob, None), (new_tree, None)])
        commit = make_commit(repo, new_tree.id, [tip], f"Ignore {dirname}/ (agent worktrees live there)",
                             IGNORE_COMMIT_AUTHOR)
        if set_ref(repo, branch_ref(target), tip, commit.id):
            for warning in _follow_checkouts(repo, branch_ref(target), tip, commit):
                log.warning(warning)
            return


def copy_included(root: Path, worktree: Path) -> list[str]:
    """Copy the files named in <root>/.worktreeinclude (globs allowed) into the worktree."""
    spec = root / ".worktreeinclude"
    if not spec.is_file():
        return []
    copied = []
    for raw in spec.read_text(errors="replace").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        pure = PurePosixPath(pattern)
        if pure.is_absolute() or ".." in pure.parts:
            log.warning(".worktreeinclude entry %r leaves the repository; skipped", pattern)
            continue
        for src in sorted(root.glob(pattern)):
            rel = src.relative_to(root)
            if rel.parts and rel.parts[0] in (".git", ".worktrees"):
                continue
            dst = worktree / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir() and not src.is_symlink():
                shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst, follow_symlinks=False)
            copied.append(rel.as_posix())
    return copied
