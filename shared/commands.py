"""Commands a person issues (through the CLI or the gateway), turned into events.

One code path for both front doors: validate, then append. Each raises CommandError with
a message that names the thing at fault; nothing is appended when validation fails.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

from shared import events as ev
from shared.bus import Bus
from shared.config import Config, ConfigError
from shared.gitops import GitError, checked_out_branch, checkout_is_clean, local_branches
from shared.plan import Plan, PlanDoc, PlanError, parse_plan
from shared.resolver import resolve
from shared.plan.size import payload_problems


class CommandError(ValueError):
    def __init__(self, message: str, field: str = "", problems: list[dict] | None = None):
        super().__init__(message)
        self.field = field
        self.problems = problems or []


def project_id_for(repo_path: Path | str) -> str:
    """A stable, readable project id for a repository: its folder name plus a short hash of its path."""
    path = Path(repo_path).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return f"{ev.subject_token(path.name)[:40]}-{digest}"


def new_run_id() -> str:
    return "r" + uuid.uuid4().hex[:11]


def check_repo(repo_path: Path | str) -> Path:
    path = Path(repo_path).expanduser().resolve()
    if not path.is_dir():
        raise CommandError(f"repository {path} does not exist: create it or pass --repo", "repo_path")
    if not (path / ".git").exists():
        raise CommandError(f"{path} is not a git repository: run `git init` there first", "repo_path")
    return path


def resolve_target(repo: Path, explicit: str | None, configured: str) -> str:
    """The branch a run merges into: the one asked for, else the configured one, else (for the default
    `main`) the branch the repository has checked out, or master or trunk."""
    try:
        branches = local_branches(repo)
        current = checked_out_branch(repo)
    except GitError as exc:
        raise CommandError(str(exc), "repo_path") from None
    if not branches:
        raise CommandError(f"repository {repo} has no commits yet: make a first commit on the branch the agents "
                           f"should merge into (e.g. `git commit --allow-empty -m init`) and run again", "repo_path")
    wanted = explicit or configured
    if wanted in branches:
        return wanted
    if not explicit and configured == "main":
        for candidate in (current, "master", "trunk"):
            if candidate and candidate in branches:
                return candidate
    raise CommandError(f"target branch {wanted!r} does not exist in {repo} (its branches: "
                       f"{', '.join(branches[:8])}): pass --branch NAME or set merge.target_branch", "target_branch")


def check_checkout(repo: Path, target: str, *, allow_dirty: bool) -> None:
    """A person's uncommitted changes on the target branch would be left behind as it moves: refuse."""
    if allow_dirty or checked_out_branch(repo) != target:
        return
    if not checkout_is_clean(repo):
        raise CommandError(f"{repo} has uncommitted changes on {target}, the branch this run merges into: commit "
                           f"or stash them, or pass --allow-dirty (the checkout then stays put while {target} moves)",
                           "repo_path")


async def start_run(bus: Bus, plan: Plan | dict, repo_path: Path | str, config: Config, *,
                    target_branch: str | None = None, run_id: str | None = None,
                    settings_override: dict[str, Any] | None = None, allow_dirty: bool = False) -> ev.RunStarted:
    """Validate the plan and the repository, then append ProjectCreated (once) and RunStarted."""
    if isinstance(plan, dict):
        try:
            plan = parse_plan(plan)
        except PlanError as exc:
            raise CommandError(str(exc), "plan", [p.to_dict() for p in exc.problems]) from None
    problems = [p.to_dict() for p in resolve(plan).errors]
    if problems:
        raise CommandError("plan is invalid:\n" + "\n".join(p["message"] for p in problems), "plan", problems)
    if too_large := payload_problems(plan, bus.max_payload):
        raise CommandError(too_large[0].message, "plan", [p.to_dict() for p in too_large])
    repo = check_repo(repo_path)
    project_id = project_id_for(repo)
    target = resolve_target(repo, target_branch, config.merge.target_branch)
    check_checkout(repo, target, allow_dirty=allow_dirty)
    try:
        settings = config.run_settings().with_overrides(settings_override)
    except ConfigError as exc:
        raise CommandError(str(exc), "settings") from None
    created = ev.ProjectCreated(project_id=project_id, aggregate_id=project_id, name=repo.name,
                                repo_path=str(repo), target_branch=target)
    await bus.publish(created, msg_id=f"{project_id}:ProjectCreated")
    run_id = run_id or new_run_id()
    started = ev.RunStarted(project_id=project_id, aggregate_id=run_id, run_id=run_id, plan=PlanDoc.of(plan),
                            repo_path=str(repo), target_branch=target, settings=settings,
                            correlation_id=run_id)
    await bus.publish(started, msg_id=f"{run_id}:RunStarted")
    return started


async def cancel_run(bus: Bus, project_id: str, run_id: str, reason: str = "cancelled by a person") -> ev.RunCancelled:
    e = ev.RunCancelled(project_id=project_id, aggregate_id=run_id, run_id=run_id, reason=reason,
                        correlation_id=run_id)
    await bus.publish(e, msg_id=f"{run_id}:RunCancelled")
    return e


def resolution_digest(files: dict[str, str]) -> str:
    from shared.gitops.resolved import digest

    return digest(files)


async def request_merge(bus: Bus, project_id: str, run_id: str, task_id: str, requested_by: str = "person", *,
                        action: str = "retry", commit: str = "", attempt: int = 0,
                        files: dict[str, str] | None = None) -> ev.MergeRequested:
    """A person's action on a conflicted task (ev.MergeRequested): retry, accept `commit`, or rerun.
    An accept is keyed by the commit and a rerun by the attempt it sets aside: asking twice is one request."""
    e = ev.MergeRequested(project_id=project_id, aggregate_id=ev.task_aggregate_id(run_id, task_id), run_id=run_id,
                          task_id=task_id, requested_by=requested_by, correlation_id=run_id, action=action,
                          commit=commit, files=dict(files or {}))
    key = {"accept": f"{run_id}:{task_id}:accept:{commit}", "rerun": f"{run_id}:{task_id}:{attempt}:rerun",
           "resolve": f"{run_id}:{task_id}:resolve:{commit}:{resolution_digest(files or {})}"}.get(action)
    await bus.publish(e, msg_id=key)
    return e
