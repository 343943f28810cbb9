"""Model selection (pure): tiers from config, complexity, history, critical path, budget, retries."""

from services.planner.models import History, Stats, select_model
from shared import events as ev

MODELS = {"haiku": "h-1", "sonnet": "s-1", "opus": "o-1"}


def pick(**kw):
    kw.setdefault("models", MODELS)
    return select_model(**kw)


def test_tiers_map_to_the_configured_model_ids_and_default_model_is_honoured():
    assert pick(complexity="medium", history={("general", "medium", "h-1"): Stats(9, 1)}).model == "s-1"
    judged = {("general", "medium", "h-1"): Stats(9, 1), ("general", "medium", "s-1"): Stats(9, 2)}
    chosen = pick(complexity="medium", default_model="opus", history=judged)
    assert chosen.model == "o-1" and chosen.tier == "opus" and "cost.default_model (opus)" in chosen.reasons[0]


def test_optimization_off_always_uses_default_model():
    for complexity in ("low", "high"):
        assert pick(complexity=complexity, optimization_enabled=False, default_model="opus", tries=3).model == "o-1"
    assert pick(complexity="low", optimization_enabled=False, default_model="my-model").model == "my-model"


def test_high_complexity_and_critical_path_get_the_strongest_tier_unless_history_shows_a_cheaper_one():
    assert pick(complexity="high").tier == "opus"
    assert pick(complexity="low", critical=True).tier == "opus"
    proven = {("api", "high", "s-1"): Stats(attempts=10, successes=9)}
    chosen = pick(complexity="high", domain="api", history=proven)
    assert chosen.tier == "sonnet" and "history" in chosen.reasons[0]
    assert chosen.inputs["history"]["success_rate"] == 0.9


def test_history_picks_the_cheapest_model_at_the_bar_over_enough_samples():
    few = {("api", "medium", "h-1"): Stats(attempts=3, successes=3)}
    weak = {("api", "medium", "h-1"): Stats(attempts=40, successes=30)}  # 0.75: ruled out
    good = {("api", "medium", "h-1"): Stats(attempts=20, successes=18)}
    assert pick(complexity="medium", domain="api", history=few).reasons[-1].startswith("exploring")
    assert pick(complexity="medium", domain="api", history=weak).tier == "sonnet"
    assert pick(complexity="medium", domain="api", history=good).tier == "haiku"
    assert pick(complexity="medium", domain="api", history=good, min_success_rate=0.95).reasons[-1].startswith(
        "exploring")


def test_low_budget_takes_the_cheapest_tier_and_a_retry_escalates_one_tier():
    assert pick(complexity="high", budget_left_fraction=0.09).tier == "haiku"
    assert pick(complexity="medium", tries=2, previous_tier="haiku").tier == "sonnet"
    assert pick(complexity="medium", tries=3, previous_tier="sonnet").tier == "opus"
    assert pick(complexity="high", tries=2, previous_tier="opus").tier == "opus"


def test_history_folds_attempts_by_identity():
    h = History()
    ready = ev.TaskReady(project_id="p", aggregate_id="a", run_id="r", task_id="t", attempt=1, domain="api",
                         complexity="low", model="h-1")
    done = ev.AgentFinished(project_id="p", aggregate_id="a", run_id="r", task_id="t", attempt=1, outcome="success",
                            cost_exact="0.25")
    for e in (ready, done, ready, done):  # a re-fold changes nothing
        h.apply(e)
    [(key, stats)] = h.stats().items()
    assert key == ("api", "low", "h-1") and (stats.attempts, stats.successes, str(stats.mean_cost)) == (1, 1, "0.25")
    h.apply(ev.AgentFinished(project_id="p", aggregate_id="a", run_id="r", task_id="t", attempt=1, outcome="budget"))
    assert h.stats() == {}  # a budget stop says nothing about the model


def test_history_kept_as_events_arrive_equals_history_counted_from_scratch():
    """The stats and spend every TaskReady reads are kept incrementally: whatever the order and the
    re-folds, they equal a count over everything folded."""
    import random
    from decimal import Decimal

    rng = random.Random(5)
    h = History()
    for _ in range(600):
        run, task, attempt = rng.choice("rs"), rng.choice("tuvw"), rng.randint(1, 3)
        kind = rng.random()
        if kind < 0.35:
            h.apply(ev.TaskReady(project_id="p", aggregate_id="a", run_id=run, task_id=task, attempt=attempt,
                                 domain=rng.choice(["api", "general"]), complexity=rng.choice(["low", "high"]),
                                 model=rng.choice(["h-1", "s-1"])))
        elif kind < 0.7:
            h.apply(ev.AgentFinished(project_id="p", aggregate_id="a", run_id=run, task_id=task, attempt=attempt,
                                     outcome=rng.choice(["success", "failure", "budget", "cancelled"]),
                                     cost_exact=str(Decimal(rng.randint(0, 900)) / 1000)))
        else:
            h.apply(ev.CostRecorded(project_id="p", aggregate_id="a", run_id=run, task_id=task,
                                    event_id=f"c{rng.randint(0, 40)}", cost_exact=str(Decimal(rng.randint(0, 90)) / 100)))
        expected: dict = {}
        for key, (outcome, cost) in h.finished.items():
            if outcome in ("success", "failure") and key in h.ready:
                s = expected.setdefault(h.ready[key], Stats())
                s.attempts, s.successes, s.cost = s.attempts + 1, s.successes + (outcome == "success"), s.cost + cost
        assert dict(h.stats()) == expected
        assert h.project_spent == sum(h.spent.values(), Decimal(0))
