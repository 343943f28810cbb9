"""WorktreeManager against real repositories, checked with the `git` command line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.gitops import GitError, WorktreeManager, branch_name, head_of, is_ancestor, merge_branch
from tests.conftest import git, require_tool


@pytest.fixture(autouse=True)
def _git_cli():
    require_tool("git")


def test_new_worktree_is_a_real_git_worktree_on_its_branch(git_repo):
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("t1", branch_name("task", "1", "Add login page"))
    assert wt.path == git_repo / ".worktrees" / "t1"
    assert wt.branch == "task/1-add-login-page" and not wt.reused
    assert git(wt.path, "rev-parse", "--abbrev-ref", "HEAD") == "task/1-add-login-page"
    assert git(wt.path, "status", "--porcelain") == ""
    assert str(wt.path) in git(git_repo, "worktree", "list")
    assert (wt.path / "README.md").read_text() == "# test\n"
    # .worktrees/ is ignored by the committed .gitignore, and main's clean checkout followed that commit
    assert ".worktrees/" in git(git_repo, "show", "main:.gitignore").splitlines()
    assert git(git_repo, "status", "--porcelain") == ""
    assert wt.base_commit == head_of(git_repo, "main") == wt.head


def test_commit_all_stages_adds_edits_deletes_and_modes(git_repo):
    (git_repo / "old.txt").write_text("old\n")
    (git_repo / "run.sh").write_text("echo hi\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "more")
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("t2", "task/2-x")
    assert wm.commit_all(wt, "nothing") is None
    (wt.path / "README.md").write_text("# changed\n")
    (wt.path / "old.txt").unlink()
    (wt.path / "run.sh").chmod(0o755)
    (wt.path / "pkg").mkdir()
    (wt.path / "pkg" / "new.py").write_text("x = 1\n")
    (wt.path / ".gitignore").write_text((wt.path / ".gitignore").read_text() + "*.log\n")
    (wt.path / "debug.log").write_text("ignored\n")
    sha = wm.commit_all(wt, "task 2: x\n\nYokeFlow-Task: 2\n")
    assert sha == git(wt.path, "rev-parse", "HEAD") == head_of(git_repo, "task/2-x")
    assert git(wt.path, "status", "--porcelain", "--ignored") == "!! debug.log"
    names = git(wt.path, "show", "--name-status", "--format=", sha).splitlines()
    assert sorted(names) == sorted(["M\t.gitignore", "M\tREADME.md", "D\told.txt", "M\trun.sh", "A\tpkg/new.py"])
    assert git(wt.path, "ls-files", "-s", "run.sh").startswith("100755")
    assert "YokeFlow-Task: 2" in git(wt.path, "log", "-1", "--format=%B")


def test_commit_all_agrees_with_git_on_every_kind_of_change(git_repo):
    """The commit stages only what changed (hashing files whose stat moved, rebuilding only their
    folders); git itself must then see nothing left to stage and an index equal to HEAD."""
    for rel in ("a/b/c.txt", "a/b/d.txt", "a/e.txt", "f.txt", "g/h.txt", "link-me.txt"):
        (git_repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (git_repo / rel).write_text(f"{rel}\n")
    os.symlink("link-me.txt", git_repo / "ln")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "shapes")
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("t9", "task/9-shapes")
    p = wt.path
    (p / "a" / "b" / "c.txt").write_text("edited\n")           # edit deep inside
    (p / "a" / "b" / "d.txt").unlink()                           # delete next to it
    (p / "f.txt").unlink()
    (p / "f.txt").mkdir()                                        # a file becomes a folder
    (p / "f.txt" / "inside.txt").write_text("inside\n")
    for child in (p / "g").iterdir():
        child.unlink()
    (p / "g").rmdir()
    (p / "g").write_text("a folder became this file\n")         # a folder becomes a file
    (p / "ln").unlink()
    os.symlink("a/e.txt", p / "ln")                              # a symlink retargeted
    (p / "new" / "deep").mkdir(parents=True)
    (p / "new" / "deep" / "x.sh").write_text("echo\n")
    (p / "new" / "deep" / "x.sh").chmod(0o755)
    (p / "empty-dir").mkdir()                                    # git has no empty folders
    (p / ".gitignore").write_text((p / ".gitignore").read_text() + "build/\n")
    (p / "build").mkdir()
    (p / "build" / "out.bin").write_bytes(b"\0ignored")
    sha = wm.commit_all(wt, "every shape")
    assert sha == git(p, "rev-parse", "HEAD")
    assert git(p, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(p, "diff", "--cached", "--name-only", "HEAD") == ""
    listed = git(p, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
    assert sorted(listed) == sorted([".gitignore", "README.md", "a/b/c.txt", "a/e.txt", "f.txt/inside.txt", "g",
                                     "link-me.txt", "ln", "new/deep/x.sh"])
    assert git(p, "ls-files", "-s", "new/deep/x.sh").startswith("100755")
    # the next commit: what changed since the last one, a nested repository among it
    (p / "new" / "deep" / "x.sh").unlink()
    (p / "a" / "e.txt").write_text("edited again\n")
    (p / "new" / "deep" / "y.txt").write_text("y\n")
    nested = p / "vendored"
    nested.mkdir()
    subprocess.run(["git", "init", "-q", str(nested)], check=True)   # a nested repository is not content
    (nested / "x.txt").write_text("x\n")
    sha = wm.commit_all(wt, "and again")
    assert git(p, "status", "--porcelain", "--untracked-files=all") == "?? vendored/"
    assert git(p, "diff", "--cached", "--name-only", "HEAD") == ""
    assert git(p, "show", "--name-status", "--format=", sha).splitlines() == [
        "M\ta/e.txt", "D\tnew/deep/x.sh", "A\tnew/deep/y.txt"]
    assert git(p, "ls-files", "-s", "ln").startswith("120000")
    assert wm.commit_all(wt, "again") is None
    # a reused worktree drops untracked files and folders, keeps ignored ones
    (p / "junk" / "deeper").mkdir(parents=True)
    (p / "junk" / "deeper" / "j.txt").write_text("junk\n")
    (p / "a" / "b" / "stray.txt").write_text("stray\n")
    again = wm.acquire("t9", "task/9-shapes")
    assert not (p / "junk").exists() and not (p / "a" / "b" / "stray.txt").exists()
    assert (p / "build" / "out.bin").exists() and (p / "a" / "b" / "c.txt").read_text() == "edited\n"
    assert again.head == sha and git(p, "status", "--porcelain") == "?? vendored/"


def test_reuse_after_crash_discards_junk_and_keeps_commits(git_repo):
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("t3", "task/3-y")
    (wt.path / "done.txt").write_text("committed\n")
    committed = wm.commit_all(wt, "work")
    (wt.path / "README.md").write_text("half-written\n")
    (wt.path / "junk.tmp").write_text("junk\n")
    again = wm.acquire("t3", "task/3-y")  # a retry after the agent died
    assert again.reused and again.head == committed and again.port_base == wt.port_base
    assert (again.path / "README.md").read_text() == "# test\n"
    assert not (again.path / "junk.tmp").exists()
    assert (again.path / "done.txt").read_text() == "committed\n"
    assert git(again.path, "status", "--porcelain") == ""


def test_reuse_brings_moved_target_in(git_repo):
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("t4", "task/4-z")
    (wt.path / "mine.txt").write_text("mine\n")
    mine = wm.commit_all(wt, "mine")
    (git_repo / "theirs.txt").write_text("theirs\n")
    git(git_repo, "add", "theirs.txt")
    git(git_repo, "commit", "-q", "-m", "main moved")
    again = wm.acquire("t4", "task/4-z")
    assert is_ancestor(git_repo, "main", again.head) and is_ancestor(git_repo, mine, again.head)
    assert (again.path / "theirs.txt").exists() and (again.path / "mine.txt").exists()
    assert git(again.path, "status", "--porcelain") == ""
    # an untouched branch is fast-forwarded instead
    wt5 = wm.acquire("t5", "task/5-ff")
    (git_repo / "more.txt").write_text("more\n")
    git(git_repo, "add", "more.txt")
    git(git_repo, "commit", "-q", "-m", "main moved again")
    assert wm.acquire("t5", "task/5-ff").head == head_of(git_repo, "main") != wt5.head


def test_reuse_without_the_target_keeps_the_branch_and_names_where_it_last_met_the_target(git_repo):
    """An epic's next task (`update_from_target=False`): its branch as the previous task left it,
    none of what main got since; its base is the newest commit of main's history the branch holds,
    the one git merge-base names."""
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("epic", "epic/e")
    (wt.path / "one.txt").write_text("one\n")
    first = wm.commit_all(wt, "first task")
    assert merge_branch(git_repo, "epic/e", into="main").status == "merged"
    (git_repo / "other.txt").write_text("another lane's\n")
    git(git_repo, "add", "other.txt")
    git(git_repo, "commit", "-q", "-m", "main moved")
    again = wm.acquire("epic", "epic/e", update_from_target=False)
    assert again.head == first and not (again.path / "other.txt").exists()
    assert again.base_commit == git(git_repo, "merge-base", "main", "epic/e") == first
    assert wm.list()[0].base_commit == first
    brought = wm.acquire("epic", "epic/e")   # with the target: main's tip, fast-forwarded
    assert brought.base_commit == brought.head == head_of(git_repo, "main")
    assert (brought.path / "other.txt").exists()


def test_reuse_does_its_file_work_with_the_repository_lock_free(git_repo, monkeypatch):
    """A reused worktree is made clean and brought up to the target while the repository's lock is
    free: the lock covers the bookkeeping only, so the acquires of other lanes never queue behind
    this one's file work (at 1,000 tasks they did, for a quarter of a second each)."""
    import fcntl

    import shared.gitops.worktrees as worktrees

    wm = WorktreeManager(git_repo)
    wm.acquire("t6", "task/6-lock")
    (git_repo / "moved.txt").write_text("moved\n")
    git(git_repo, "add", "moved.txt")
    git(git_repo, "commit", "-q", "-m", "main moved")
    seen: list[tuple[str, str]] = []

    def probe(step: str, fn):
        def wrapped(*args, **kwargs):
            fd = os.open(git_repo / ".git" / "yokeflow-worktrees.lock", os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # refused while anyone holds it, this thread too
                fcntl.flock(fd, fcntl.LOCK_UN)
                seen.append((step, "free"))
            except BlockingIOError:
                seen.append((step, "held"))
            finally:
                os.close(fd)
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(worktrees, "reset_to", probe("reset", worktrees.reset_to))
    monkeypatch.setattr(worktrees, "switch_tree", probe("bring in main", worktrees.switch_tree))
    monkeypatch.setattr(worktrees, "checkout_new", probe("check out", worktrees.checkout_new))
    again = wm.acquire("t6", "task/6-lock")
    assert seen == [("reset", "free"), ("bring in main", "free")]
    seen.clear()
    new = wm.acquire("t7", "task/7-new")  # a new lane's worktree: its files are written with the lock free too
    assert seen == [("check out", "free"), ("reset", "free")] and not new.reused
    assert git(new.path, "status", "--porcelain") == "" and (new.path / "moved.txt").exists()
    assert again.reused and again.head == head_of(git_repo, "main")
    assert (again.path / "moved.txt").read_text() == "moved\n"
    assert git(again.path, "status", "--porcelain") == ""
    assert wm.list()[0].base_commit == again.base_commit == head_of(git_repo, "main")


def test_a_new_worktree_half_written_by_a_crash_is_made_again(git_repo, monkeypatch):
    """Its files are written outside the lock and its pointer last: a crash in between leaves a
    folder that is no worktree yet, which the next acquire of the name removes and makes again."""
    import shared.gitops.worktrees as worktrees

    wm = WorktreeManager(git_repo)
    real = worktrees.checkout_new

    def crash(root, index_path, store, tree):
        real(root, index_path, store, tree)
        raise KeyboardInterrupt("killed after the files, before the pointer")

    monkeypatch.setattr(worktrees, "checkout_new", crash)
    with pytest.raises(KeyboardInterrupt):
        wm.acquire("t8", "task/8-crash")
    path = git_repo / ".worktrees" / "t8"
    assert (path / "README.md").exists() and not (path / ".git").exists()
    (path / "junk.txt").write_text("left by the crash\n")
    monkeypatch.setattr(worktrees, "checkout_new", real)
    wt = wm.acquire("t8", "task/8-crash")
    assert not wt.reused and not (path / "junk.txt").exists()
    assert git(wt.path, "status", "--porcelain") == ""
    assert git(wt.path, "rev-parse", "--abbrev-ref", "HEAD") == "task/8-crash"
    assert str(wt.path) in git(git_repo, "worktree", "list")


def test_reuse_touches_only_the_paths_that_differ(git_repo):
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("t7", "task/7-keep")
    (wt.path / "kept.txt").write_text("kept\n")
    wm.commit_all(wt, "kept")
    before = {name: (wt.path / name).stat() for name in ("kept.txt", "README.md")}
    (wt.path / "junk.tmp").write_text("junk\n")
    (git_repo / "theirs.txt").write_text("theirs\n")
    git(git_repo, "add", "theirs.txt")
    git(git_repo, "commit", "-q", "-m", "main moved")
    again = wm.acquire("t7", "task/7-keep")
    assert (again.path / "theirs.txt").exists() and not (again.path / "junk.tmp").exists()
    for name, st in before.items():  # the same file, never rewritten
        now = (again.path / name).stat()
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), name
    assert git(again.path, "status", "--porcelain") == ""


def test_a_new_checkout_is_watched_from_the_start_and_never_hashed_again(git_repo, monkeypatch):
    from dulwich.repo import Repo

    from shared.gitops import checkout_index

    for i in range(20):
        (git_repo / "src" / f"m{i}.py").parent.mkdir(exist_ok=True)
        (git_repo / "src" / f"m{i}.py").write_text(f"x = {i}\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "twenty files")
    hashed: list[bytes] = []
    real = checkout_index.content_matches

    def counting(entry, full, st):
        hashed.append(full)
        return real(entry, full, st)

    monkeypatch.setattr(checkout_index, "content_matches", counting)
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("t9", "task/9-new")  # a fresh checkout, then the check every acquire makes
    assert hashed == []  # every file was written within the index's second: a stat check would hash them all
    # the watch runs from the checkout on: an edit of the same size in the same second is seen
    (wt.path / "src" / "m3.py").write_text("y = 3\n")
    (wt.path / "stray.txt").write_text("stray\n")
    tree = git(git_repo, "rev-parse", "task/9-new^{tree}").encode()
    with Repo(str(git_repo)) as repo:
        assert not checkout_index.working_tree_clean(str(wt.path), str(wm._admin("t9") / "index"),
                                                     repo.object_store, tree)
    again = wm.acquire("t9", "task/9-new")  # a reuse resets it: the edit and the stray file go
    assert (again.path / "src" / "m3.py").read_text() == "x = 3\n" and not (again.path / "stray.txt").exists()
    assert git(again.path, "status", "--porcelain") == ""


def test_lanes_work_side_by_side_in_threads_and_every_file_lands(git_repo):
    """Eight lanes acquire, write, commit and merge from threads at once (the merges one at a time,
    as the merger makes them, into a repository whose own checkout follows `main`): nothing is
    lost, nothing is left dirty, and the repository checks out whole."""
    import threading

    wm = WorktreeManager(git_repo)
    merging = threading.Lock()
    errors: list[BaseException] = []

    def lane(n: int) -> None:
        try:
            for round_ in range(6):
                wt = wm.acquire(f"lane{n}", f"epic/lane-{n}")
                (wt.path / f"lane{n}").mkdir(exist_ok=True)
                (wt.path / f"lane{n}" / f"r{round_}.txt").write_text(f"{n}/{round_}\n")
                assert wm.commit_all(wt, f"lane {n} round {round_}")
                with merging:
                    result = merge_branch(git_repo, f"epic/lane-{n}", into="main", message=f"merge {n}/{round_}")
                assert result.status == "merged", result
        except BaseException as exc:  # reported below, with the thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=lane, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    files = set(git(git_repo, "ls-tree", "-r", "--name-only", "main").split())
    assert {f"lane{n}/r{r}.txt" for n in range(8) for r in range(6)} <= files
    assert git(git_repo, "status", "--porcelain") == ""  # main's own checkout followed every merge
    for n in range(8):
        wt = wm.acquire(f"lane{n}", f"epic/lane-{n}")  # every lane brought up to main, clean
        assert {f"lane{m}/r5.txt" for m in range(8)} <= set(git(wt.path, "ls-files").split())
        assert git(wt.path, "status", "--porcelain") == ""
    git(git_repo, "fsck", "--no-progress")


def test_reuse_with_conflicting_target_names_the_files(git_repo):
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("t6", "task/6-c")
    (wt.path / "README.md").write_text("branch version\n")
    wm.commit_all(wt, "branch edit")
    (git_repo / "README.md").write_text("main version\n")
    git(git_repo, "commit", "-q", "-am", "main edit")
    with pytest.raises(GitError, match="README.md"):
        wm.acquire("t6", "task/6-c")


def test_worktreeinclude_setup_command_and_port_blocks(git_repo):
    (git_repo / ".env").write_text("SECRET=1\n")
    (git_repo / "config").mkdir()
    (git_repo / "config" / "local.json").write_text("{}\n")
    (git_repo / ".worktreeinclude").write_text("# local files\n.env\nconfig/*.json\n../outside\n")
    (git_repo / ".gitignore").write_text(".env\nconfig/\nnode_modules/\n")
    git(git_repo, "add", ".gitignore", ".worktreeinclude")
    git(git_repo, "commit", "-q", "-m", "ignore local files")
    # what setup installs must be gitignored (like node_modules/): a reused worktree drops untracked files
    setup = "mkdir -p node_modules && echo $YOKEFLOW_PORT_BASE >> node_modules/setup-ran.txt"
    wm = WorktreeManager(git_repo, setup_command=setup,
                         port_base=30000, port_block=5)
    a = wm.acquire("a", "task/a")
    b = wm.acquire("b", "task/b")
    assert (a.path / ".env").read_text() == "SECRET=1\n"
    assert (a.path / "config" / "local.json").exists()
    assert {a.port_base, b.port_base} == {30000, 30005}
    assert (a.path / "node_modules" / "setup-ran.txt").read_text() == f"{a.port_base}\n"
    assert wm.acquire("a", "task/a").port_base == a.port_base
    assert (a.path / "node_modules" / "setup-ran.txt").read_text().count("\n") == 1  # once per new worktree, not per acquire
    wm.release("a")
    c = wm.acquire("c", "task/c")
    assert c.port_base == 30000  # a released block is handed out again


def test_failing_setup_command_is_a_clear_error_and_reruns(git_repo):
    wm = WorktreeManager(git_repo, setup_command="test -f ok || { echo missing ok >&2; exit 4; }")
    with pytest.raises(GitError, match="exit 4"):
        wm.acquire("s", "task/s")
    (git_repo / "ok").write_text("")  # the fix: a local file the setup needs, copied in by .worktreeinclude
    (git_repo / ".worktreeinclude").write_text("ok\n")
    again = wm.acquire("s", "task/s")
    assert again.reused and (again.path / "ok").exists()


async def test_concurrent_acquire_of_different_worktrees(git_repo):
    wm = WorktreeManager(git_repo)
    wts = await asyncio.gather(*(asyncio.to_thread(wm.acquire, f"w{i}", f"task/w{i}") for i in range(6)))
    assert len({w.port_base for w in wts}) == 6
    for w in wts:
        assert git(w.path, "status", "--porcelain") == ""
        assert git(w.path, "rev-parse", "--abbrev-ref", "HEAD") == w.branch
    assert git(git_repo, "log", "--oneline", "--grep", "Ignore .worktrees").count("\n") == 0  # one ignore commit


def test_concurrent_acquire_from_processes(git_repo, tmp_path):
    script = (
        "import sys; from shared.gitops import WorktreeManager;"
        "w = WorktreeManager(sys.argv[1]).acquire(sys.argv[2], 'task/' + sys.argv[2]); print(w.port_base)"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(git_repo), f"p{i}"], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2]) for i in range(4)]
    ports = [int(p.communicate()[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(ports)) == 4
    assert len(git(git_repo, "worktree", "list").splitlines()) == 5


def _age(repo: Path, name: str, seconds: float) -> None:
    """The worktree `name` was last acquired and committed to `seconds` ago."""
    past = time.time() - seconds
    admin = repo / ".git" / "worktrees" / name
    meta = admin / "yokeflow.json"
    meta.write_text(meta.read_text().replace('"last_used_at": ', f'"last_used_at": {past}, "x": '))
    os.utime(admin / "index", (past, past))
    os.utime(repo / ".git" / "refs" / "heads" / "task" / name, (past, past))


def test_release_and_prune(git_repo):
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("r1", "task/r1")
    wm.release("r1")
    assert not wt.path.exists() and head_of(git_repo, "task/r1") is None
    assert str(wt.path) not in git(git_repo, "worktree", "list")
    old = wm.acquire("old", "task/old")
    (old.path / "work.txt").write_text("unmerged work\n")
    wm.commit_all(old, "unmerged")
    merged = wm.acquire("merged", "task/merged")
    fresh = wm.acquire("fresh", "task/fresh")
    for name in ("old", "merged", "fresh"):
        _age(git_repo, name, 7200)
    (fresh.path / "later.txt").write_text("committed to a moment ago\n")
    wm.commit_all(fresh, "recent work")   # a commit is a use: the worktree stays
    assert sorted(wm.prune(3600)) == ["merged", "old"]
    assert [w.name for w in wm.list()] == ["fresh"]
    assert fresh.path.exists() and not old.path.exists() and not merged.path.exists()
    assert head_of(git_repo, "task/old") is not None  # unmerged work keeps its branch
    assert head_of(git_repo, "task/merged") is None


def test_a_released_worktree_kept_for_reuse_becomes_the_next_new_one_writing_only_what_differs(git_repo):
    wm = WorktreeManager(git_repo)
    first = wm.acquire("e1", "epic/1-first")
    (first.path / "mine.txt").write_text("mine\n")
    wm.commit_all(first, "mine")
    assert merge_branch(git_repo, "epic/1-first", into="main", message="merge e1").status == "merged"
    (first.path / "junk.tmp").write_text("left behind\n")
    before = (first.path / "README.md").stat()
    wm.release("e1", keep_for_reuse=True)
    assert not first.path.exists() and wm.list() == [] and head_of(git_repo, "epic/1-first") is None
    (git_repo / "theirs.txt").write_text("theirs\n")   # main moves on while the checkout waits
    git(git_repo, "add", "theirs.txt")
    git(git_repo, "commit", "-q", "-m", "main moved")
    second = wm.acquire("e2", "epic/2-second")
    assert not second.reused and second.port_base == first.port_base
    now = (second.path / "README.md").stat()
    assert (now.st_ino, now.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # the same file, not rewritten
    assert (second.path / "mine.txt").read_text() == "mine\n" and (second.path / "theirs.txt").exists()
    assert not (second.path / "junk.tmp").exists()
    assert git(second.path, "rev-parse", "--abbrev-ref", "HEAD") == "epic/2-second"
    assert git(second.path, "status", "--porcelain") == ""
    assert git(second.path, "rev-parse", "HEAD") == git(git_repo, "rev-parse", "main")
    listed = git(git_repo, "worktree", "list")
    assert str(second.path) in listed and "spare_" not in listed
    wm.acquire("e4", "epic/4-fourth")
    wm.release("e4", keep_for_reuse=True)  # a spare waiting: git's own checks accept it
    assert subprocess.run(["git", "fsck", "--no-dangling"], cwd=git_repo, capture_output=True).returncode == 0
    third = wm.acquire("e3", "epic/3-third")  # no spare left: a checkout of its own
    assert (third.path / "theirs.txt").exists() and git(third.path, "status", "--porcelain") == ""


def test_a_spare_never_checks_out_a_branch_that_is_checked_out_elsewhere(git_repo):
    wm = WorktreeManager(git_repo)
    wm.acquire("a", "task/x")
    wm.acquire("b", "task/b")
    wm.release("b", keep_for_reuse=True)
    with pytest.raises(GitError, match="task/x: the branch is already checked out at"):
        wm.acquire("c", "task/x")
    assert not (git_repo / ".worktrees" / "c").exists()
    assert [p.name.startswith("spare_") for p in (git_repo / ".worktrees").iterdir() if p.name != "a"] == [True]


def test_spares_are_capped_dropped_at_a_runs_end_and_pruned(git_repo):
    from shared.gitops.worktrees import MAX_SPARES

    wm = WorktreeManager(git_repo)
    for i in range(MAX_SPARES + 2):
        wm.acquire(f"s{i}", f"task/s{i}")
    for i in range(MAX_SPARES + 2):
        wm.release(f"s{i}", keep_for_reuse=True)
    spares = [p.name for p in (git_repo / ".worktrees").iterdir()]
    assert len(spares) == MAX_SPARES and all(n.startswith("spare_") for n in spares)
    wm.drop_spares()
    assert list((git_repo / ".worktrees").iterdir()) == []
    assert "spare_" not in git(git_repo, "worktree", "list")
    wm.acquire("p1", "task/p1")
    wm.release("p1", keep_for_reuse=True)
    assert [n.startswith("spare_") for n in wm.prune(0)] == [True]
    assert list((git_repo / ".worktrees").iterdir()) == []


def test_bare_or_missing_repository_is_a_clear_error(tmp_path):
    with pytest.raises(GitError, match="not a git repository"):
        WorktreeManager(tmp_path)
    with pytest.raises(GitError, match="no such folder"):
        WorktreeManager(tmp_path / "nope")


def test_merged_worktree_branch_reaches_main(git_repo):
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("m", "task/m")
    (wt.path / "feature.txt").write_text("feature\n")
    wm.commit_all(wt, "feature")
    result = merge_branch(git_repo, "task/m")
    assert result.status == "merged"
    assert (git_repo / "feature.txt").read_text() == "feature\n"
    assert os.path.exists(wt.path)
    wm.release("m")
    assert git(git_repo, "status", "--porcelain") == ""


def test_repository_map_from_the_index_equals_the_walked_one(git_repo):
    from services.executor.agent.prompt import repo_map
    from shared.gitops.checkout import tracked_files

    for rel in ("src/app/main.py", "src/app/util/x.py", "src/b.py", "docs/a.md", "z.txt", "a-b.txt", "a/b.txt",
                "node_modules/dep/index.js", "pkg/__pycache__/m.pyc"):
        (git_repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (git_repo / rel).write_text(rel * 3)
    os.symlink("z.txt", git_repo / "to-file")
    os.symlink("src", git_repo / "to-folder")
    git(git_repo, "add", "-A", "-f")
    git(git_repo, "commit", "-q", "-m", "shapes")
    wt = WorktreeManager(git_repo).acquire("t10", "task/10-map")
    for lines in (200, 8, 3):
        assert repo_map(wt.path, lines, tracked=tracked_files(wt.path)) == repo_map(wt.path, lines)
    assert "node_modules" not in repo_map(wt.path, tracked=tracked_files(wt.path))
    assert tracked_files(git_repo / "nowhere") is None   # no index: the caller walks


def test_a_run_s_end_releases_each_worktree_once_however_many_tasks_used_it(git_repo, monkeypatch):
    """By epic, every task of an epic names the epic's worktree: the merger's clean-up at the run's
    end removes each one once (a 1,000-task run released 100 worktrees 1,000 times)."""
    import services.merger.service as merger_service
    from services.merger.domain import MergerState
    from shared import events as ev
    from shared.config import RunSettings
    from shared.plan import PlanDoc

    wm = WorktreeManager(git_repo)
    paths = {e: wm.acquire(f"epic-{e}", branch_name("epic", e, e)).path for e in ("e1", "e2")}
    plan = {"name": "p", "epics": [{"id": e, "name": e, "tasks": [{"id": f"{e}t{i}", "title": "t"} for i in range(3)]}
                                   for e in ("e1", "e2")]}
    state = MergerState()
    events: list[ev.Event] = [ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", plan=PlanDoc.of(plan),
                                            repo_path=str(git_repo), settings=RunSettings.of({}))]
    for e, path in paths.items():
        for i in range(3):
            task = f"{e}t{i}"
            events += [ev.AgentFinished(project_id="p", aggregate_id=f"r-{task}", run_id="r", task_id=task, attempt=1,
                                        outcome="success", branch=f"epic/{e}", worktree_path=str(path)),
                       ev.BranchMerged(project_id="p", aggregate_id=f"r-{task}", run_id="r", task_id=task, attempt=1,
                                       branch=f"epic/{e}", commit="c0ffee")]
    for e in events:
        view = state.apply(e)
    released: list[str] = []
    real = merger_service._release_quietly
    monkeypatch.setattr(merger_service, "_release_quietly",
                        lambda manager, name, *a: (released.append(name), real(manager, name, *a)))
    merger = merger_service.Merger(bus=None)  # the clean-up is git work only
    try:
        asyncio.run(merger._cleanup_run(view))
    finally:
        merger._git.close()
    assert sorted(released) == ["epic-e1", "epic-e2"]
    assert not any(p.exists() for p in paths.values())
    assert "epic-e1" not in git(git_repo, "worktree", "list")
