"""The agent's prompt: a cacheable system prefix and a task prompt with everything it needs."""

from services.executor.agent.prompt import build_system_prompt, build_task_prompt, repo_map


def test_system_prompt_ends_its_stable_prefix_with_a_cache_breakpoint():
    blocks = build_system_prompt(expertise="Use SQLAlchemy 2 style.", repo_map="app.py (10 B)")
    assert [b["type"] for b in blocks] == ["text"] * 3
    assert "SQLAlchemy 2 style" in blocks[1]["text"] and "app.py (10 B)" in blocks[2]["text"]
    assert blocks[-1]["cache_control"] == {"type": "ephemeral"}
    assert all("cache_control" not in b for b in blocks[:-1])
    empty = build_system_prompt(expertise="", repo_map="")
    assert len(empty) == 1 and empty[0]["cache_control"] == {"type": "ephemeral"}


def test_task_prompt_carries_task_epic_checks_dependencies_and_previous_attempt():
    task = {"task_id": "t7", "title": "Add login", "description": "POST /login returns a token.",
            "domain": "api", "tests": ["pytest tests/test_login.py", " "]}
    epic = {"epic_id": "e2", "title": "Auth", "description": "Users can sign in."}
    deps = [{"task_id": "t3", "title": "User model", "summary": "users table with password hashes"}]
    previous = {"attempt": 1, "outcome": "failure", "summary": "wrote the route",
                "checks": [{"command": "pytest tests/test_login.py", "exit_code": 1, "passed": False,
                            "output": "E   assert 401 == 200"}]}
    text = build_task_prompt(task, epic, deps, previous)
    for expected in ("Task t7: Add login", "POST /login returns a token.", "domain: api", "Epic e2: Auth",
                     "Users can sign in.", "`pytest tests/test_login.py`", "t3 User model: users table",
                     "attempt 1", "wrote the route", "assert 401 == 200"):
        assert expected in text, expected
    assert text.count("`pytest tests/test_login.py`") == 2  # once as a check, once as the failed check


def test_task_prompt_without_checks_or_history_says_so():
    text = build_task_prompt({"id": "t1", "title": "Readme"}, None, [], None)
    assert "no check commands" in text and "previous attempt" not in text


def test_repo_map_lists_files_with_sizes_and_skips_git_caches_and_ignored(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / "node_modules" / "x").mkdir(parents=True)
    (tmp_path / "node_modules" / "x" / "index.js").write_text("x")
    (tmp_path / ".gitignore").write_text("*.log\n.env\n")
    (tmp_path / "debug.log").write_text("noise")
    (tmp_path / ".env").write_text("SECRET=1")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("print('hi')\n")
    text = repo_map(tmp_path)
    assert "src/" in text and "app.py (12 B)" in text and ".gitignore" in text
    for hidden in ("HEAD", "node_modules", "debug.log", ".env "):
        assert hidden not in text, hidden


def test_repo_map_folds_deep_folders_to_stay_short(tmp_path):
    for i in range(30):
        d = tmp_path / "pkg" / f"mod{i}"
        d.mkdir(parents=True)
        (d / "a.py").write_text("x" * 100)
    (tmp_path / "README.md").write_text("hi")
    text = repo_map(tmp_path, max_lines=10)
    assert len(text.splitlines()) <= 10
    assert "pkg/ … 30 files, 2.9 KB" in text and "README.md (2 B)" in text


def test_a_map_too_long_even_folded_shows_its_first_lines_and_counts_the_rest(tmp_path):
    tracked = [(f"f{i:03d}.txt", 10, 0o100644) for i in range(300)] + [
        ("lib/a/x.py", 1000, 0o100644), ("lib/b.py", 24, 0o100644), ("node_modules/m.js", 5, 0o100644)]
    text = repo_map(tmp_path, max_lines=50, tracked=tracked[::-1])   # any index order: walk order comes out
    lines = text.splitlines()
    assert len(lines) == 50 and lines[0] == "f000.txt (10 B)" and lines[48] == "f048.txt (10 B)"
    assert lines[-1] == "… and 252 more entries"   # 300 files and lib/ (folded, 2 files) in all, node_modules never
    short = repo_map(tmp_path, max_lines=2, tracked=[("z.txt", 1, 0o100644), ("a.txt", 1, 0o100644)] + tracked[-3:])
    assert short == "a.txt (1 B)\n… and 2 more entries"   # z.txt and lib/ (folded) not shown


def test_a_resolution_prompt_lists_the_conflicts_and_what_failed_before():
    from services.executor.agent.prompt import build_resolution_prompt

    conflicts = [{"path": "app.py", "kind": "content", "message": "app.py: both sides changed the same lines"},
                 {"path": "old.md", "kind": "modify/delete", "message": "old.md: deleted in main and modified on the other side"}]
    first = build_resolution_prompt({"id": "t7", "title": "Login", "description": "Add login", "tests": ["pytest -q"]},
                                    branch="task/t7-login", target="main", conflicts=conflicts, marked_files=["app.py"])
    assert first.startswith("# Resolve a merge conflict for task t7: Login")
    assert "`app.py` (content)" in first and "`old.md` (modify/delete)" in first
    assert "<<<<<<< task/t7-login" in first and ">>>>>>> main" in first
    assert "Every conflict marker must be gone from `app.py`" in first and "- `pytest -q`" in first
    assert "previous resolution" not in first
    again = build_resolution_prompt(
        {"id": "t7", "title": "Login"}, branch="task/t7-login", target="main", conflicts=conflicts,
        marked_files=["app.py"], previous_attempt={"attempt": 2, "error": "checks still failing", "checks": [
            {"command": "no conflict markers left", "passed": False, "output": "conflict markers remain in: app.py"}]})
    assert "## A previous resolution (attempt 2) failed" in again
    assert "conflict markers remain in: app.py" in again and "checks still failing" in again
