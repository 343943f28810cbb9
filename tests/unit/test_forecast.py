"""The forecast of a run's remaining cost and time (pure): history per (domain, complexity), the
remaining graph's critical path and the run's concurrency."""

from decimal import Decimal

from shared.forecast import forecast_from


def task(tid, status="pending", domain="api", complexity="medium", deps=()):
    return {"id": tid, "status": status, "domain": domain, "complexity": complexity, "depends_on": list(deps)}


def attempt(outcome="success", cost="0.10", seconds=60.0, domain="api", complexity="medium"):
    return {"domain": domain, "complexity": complexity, "outcome": outcome, "cost_usd": Decimal(cost),
            "duration_s": seconds}


def test_remaining_cost_is_mean_attempt_cost_times_expected_tries():
    history = [attempt(cost="0.10"), attempt(cost="0.30"), attempt("failure", cost="0.20"),
               attempt(cost="1", seconds=10, domain="docs", complexity="low")]
    tasks = [task("done", status="done"), task("a"), task("b", deps=["a"]), task("c", domain="docs", complexity="low")]
    f = forecast_from(tasks, history, concurrency=2, max_attempts=2)
    # api/medium: mean 0.20 an attempt, 2 of 3 succeed -> 1.5 tries each; docs/low: 1.00, one try
    assert f["remaining_tasks"] == 3 and Decimal(f["expected_cost_usd"]) == Decimal("1.6")
    # a -> b is the critical path: 2 x 90 s; all the work over 2 agents is (90 + 90 + 10) / 2
    assert f["critical_path_seconds"] == 180.0 and f["expected_seconds"] == 180.0 and f["basis"] == "history"


def test_without_history_it_says_so_and_a_finished_run_has_nothing_left():
    assert forecast_from([task("a")], [], concurrency=3, max_attempts=2)["expected_cost_usd"] is None
    done = forecast_from([task("a", status="done")], [attempt()], concurrency=3, max_attempts=2)
    assert done["remaining_tasks"] == 0 and done["expected_cost_usd"] == "0"
    unknown = forecast_from([task("a", domain="ui")], [attempt()], concurrency=3, max_attempts=2)
    assert unknown["basis"].startswith("history (project means")
