"""A project's report for export: its runs (plan, results, costs) and what it learned."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from shared import readmodel
from shared.db import Database


async def build_report(database: Database, project: dict[str, Any]) -> dict[str, Any]:
    project_id = project["id"]
    runs = []
    for summary in reversed(await readmodel.list_runs(database, project_id, limit=1000)):  # oldest first
        detail = await readmodel.run_detail(database, summary["id"])
        if detail is None:
            continue
        plan = await readmodel.run_plan(database, summary["id"])
        runs.append({
            "run_id": summary["id"], "plan_name": summary["plan_name"], "status": summary["status"],
            "reason": summary["reason"], "started_at": summary["started_at"], "ended_at": summary["ended_at"],
            "settings": (detail["run"].get("settings") or {}).get("parallel", {}),
            "plan": {"name": plan.name, "epics": [
                {"id": e.id, "name": e.name, "tasks": [
                    {"id": t.id, "title": t.title, "depends_on": list(t.depends_on), "domain": t.domain}
                    for t in e.tasks]} for e in plan.epics]},
            "results": [{"task_id": t["id"], "epic_id": t["epic_id"], "title": t["title"], "state": t["state"],
                         "attempts": t["attempt"], "model": t["model"], "cost_usd": round(float(t["cost_usd"] or 0), 6),
                         "merge_commit": t["merge_commit"], "reason": t["reason"]} for t in detail["tasks"]],
            "totals": {"tasks": detail["totals"]["tasks"], "by_state": detail["totals"]["by_state"],
                       "cost_usd": detail["totals"]["cost_usd"], "tokens": detail["totals"]["tokens"],
                       "elapsed_s": detail["totals"]["elapsed_s"]},
        })
    costs = await readmodel.costs_by_model(database, project_id)
    learnings = [{"domain": d["domain"], "version": d["version"], "lines": d["lines"], "updated_at": d["updated_at"],
                  "content": d["content"]} for d in await readmodel.expertise(database, project_id)]
    return {"project": {"id": project_id, "name": project["name"], "repo_path": project["repo_path"],
                        "target_branch": project.get("target_branch", "")},
            "generated_at": datetime.now(timezone.utc).isoformat(), "runs": runs,
            "costs": {"total_usd": round(sum(c["cost_usd"] for c in costs), 6), "by_run_and_model": costs},
            "learnings": learnings}


def _cell(value: Any) -> str:
    return str(value if value not in (None, "") else "–").replace("|", "\\|").replace("\n", " ")


def report_markdown(report: dict[str, Any]) -> str:
    p = report["project"]
    out = [f"# {p['name']} — YokeFlow report", "",
           f"Repository `{p['repo_path']}`, target branch `{p['target_branch']}`; generated {report['generated_at']}.", ""]
    for run in report["runs"]:
        t = run["totals"]
        states = ", ".join(f"{n} {s}" for s, n in sorted(t["by_state"].items()))
        out += [f"## Run {run['run_id']}: {run['plan_name']} — {run['status']}", "",
                f"{t['tasks']} tasks ({states}); ${t['cost_usd']:.4f}; {t['tokens']['total']} tokens; "
                f"started {run['started_at']}" + (f", ended {run['ended_at']}" if run["ended_at"] else "") + ".", ""]
        if run["reason"]:
            out += [f"Reason: {run['reason']}", ""]
        out += ["| task | epic | title | state | attempts | model | cost (USD) | merge commit |",
                "|---|---|---|---|---|---|---|---|"]
        out += [f"| {_cell(r['task_id'])} | {_cell(r['epic_id'])} | {_cell(r['title'])} | {_cell(r['state'])} | "
                f"{_cell(r['attempts'])} | {_cell(r['model'])} | {r['cost_usd']:.4f} | {_cell((r['merge_commit'] or '')[:12])} |"
                for r in run["results"]]
        out.append("")
    out += ["## Costs", "", f"Total ${report['costs']['total_usd']:.4f}.", "",
            "| run | model | calls | input tokens | output tokens | cost (USD) |", "|---|---|---|---|---|---|"]
    out += [f"| {_cell(c['run_id'])} | {_cell(c['model'])} | {c['calls']} | {c['input_tokens']} | {c['output_tokens']} | "
            f"{c['cost_usd']:.4f} |" for c in report["costs"]["by_run_and_model"]]
    out += ["", "## Learnings", ""]
    if not report["learnings"]:
        out.append("No expertise recorded yet.")
    for entry in report["learnings"]:
        out += [f"### {entry['domain']} (version {entry['version']}, {entry['lines']} lines)", "", entry["content"] or "", ""]
    return "\n".join(out).rstrip() + "\n"
