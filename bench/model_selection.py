"""Model selection benchmark — a SIMULATION, not a measurement of real models.

Synthetic tasks with *stated* per-model success rates and token counts are replayed through the
real selector (`services/planner/models.py` `select_model`) and its real history (`History`,
folded from the TaskReady / AgentFinished events this script makes), against always-sonnet and
always-opus. Every strategy gets the same tasks and the same tries (`--max-tries`); costs are
the real pricing table's (`cost.models` defaults: claude-haiku-5-5, claude-sonnet-5-5,
claude-opus-5-5).

    python bench/model_selection.py [--tasks 400] [--seeds 5] [--max-tries 3]

The world it simulates (stated, not measured):
- each task has a hidden difficulty d ~ U(0, 1); a model solves it iff d < its success rate for the
  task's (domain, complexity) — a stronger model solves everything a weaker one does, and a retry
  on the same model fails again;
- success rates (haiku / sonnet / opus): low 0.96 / 0.98 / 0.99; medium 0.90 / 0.94 / 0.97, but
  haiku only 0.70 on medium `database` work; high 0.40 / 0.80 / 0.93;
- an attempt makes 5 (low), 10 (medium) or 18 (high) model calls; haiku needs 1.4× as many, opus
  0.75× (stronger models finish in fewer turns); each call sends 2 500 input tokens, 1 500 cache
  writes, 12 000 cache reads and gets 900 output tokens;
- the mix: 45 % low, 45 % medium, 10 % high; 10 % of tasks are on the critical path; five domains.
Printed: total cost, success rate, attempts, and the selector's cost against each fixed choice.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared import events as ev  # noqa: E402
from shared.config import Cost  # noqa: E402
from shared.llm.pricing import PriceTable  # noqa: E402
from shared.llm.types import Usage  # noqa: E402
from services.planner.models import TIERS, History, select_model  # noqa: E402

DOMAINS = ("api", "database", "frontend", "testing", "docs")
SUCCESS = {  # tier -> complexity -> rate (stated)
    "haiku": {"low": 0.96, "medium": 0.90, "high": 0.40},
    "sonnet": {"low": 0.98, "medium": 0.94, "high": 0.80},
    "opus": {"low": 0.99, "medium": 0.97, "high": 0.93},
}
HARD_FOR_HAIKU = {("database", "medium"): 0.70}
CALLS = {"low": 5, "medium": 10, "high": 18}
CALL_FACTOR = {"haiku": 1.4, "sonnet": 1.0, "opus": 0.75}
PER_CALL = Usage(input_tokens=2500, output_tokens=900, cache_write_tokens=1500, cache_read_tokens=12_000)
MODELS = Cost().models
PRICES = PriceTable()


@dataclass(frozen=True)
class Task:
    id: str
    domain: str
    complexity: str
    critical: bool
    difficulty: float


def tasks(n: int, rng: random.Random) -> list[Task]:
    out = []
    for i in range(n):
        roll = rng.random()
        complexity = "low" if roll < 0.45 else "medium" if roll < 0.90 else "high"
        out.append(Task(f"t{i}", rng.choice(DOMAINS), complexity, rng.random() < 0.10, rng.random()))
    return out


def solves(tier: str, t: Task) -> bool:
    rate = HARD_FOR_HAIKU.get((t.domain, t.complexity), SUCCESS[tier][t.complexity]) if tier == "haiku" \
        else SUCCESS[tier][t.complexity]
    return t.difficulty < rate


def attempt_cost(tier: str, t: Task) -> Decimal:
    calls = round(CALLS[t.complexity] * CALL_FACTOR[tier])
    return PRICES.cost(MODELS[tier], PER_CALL) * calls


@dataclass
class Outcome:
    cost: Decimal = Decimal(0)
    solved: int = 0
    attempts: int = 0
    first_tries: dict | None = None


def fixed(tier: str, work: list[Task], max_tries: int) -> Outcome:
    out = Outcome()
    for t in work:
        for _ in range(max_tries):
            out.attempts += 1
            out.cost += attempt_cost(tier, t)
            if solves(tier, t):
                out.solved += 1
                break
    return out


def selector(work: list[Task], max_tries: int) -> Outcome:
    """The real selector with the real history, fed the events a run would append."""
    history, out = History(), Outcome(first_tries={tier: 0 for tier in TIERS})
    cost = Cost()
    for t in work:
        previous = ""
        for tries in range(1, max_tries + 1):
            choice = select_model(complexity=t.complexity, domain=t.domain, tries=tries, previous_tier=previous,
                                  critical=t.critical, default_model=cost.default_model, models=MODELS,
                                  history=history.stats(), min_success_rate=cost.min_success_rate,
                                  min_samples=cost.min_samples)
            if tries == 1:
                out.first_tries[choice.tier] += 1
            spent, ok = attempt_cost(choice.tier, t), solves(choice.tier, t)
            history.apply(ev.TaskReady(project_id="bench", aggregate_id=t.id, run_id="r", task_id=t.id,
                                       attempt=tries, domain=t.domain, complexity=t.complexity, model=choice.model))
            history.apply(ev.AgentFinished(project_id="bench", aggregate_id=t.id, run_id="r", task_id=t.id,
                                           attempt=tries, outcome="success" if ok else "failure",
                                           cost_usd=float(spent), cost_exact=str(spent)))
            out.attempts += 1
            out.cost += spent
            previous = choice.tier
            if ok:
                out.solved += 1
                break
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-tries", type=int, default=3)
    args = parser.parse_args(argv)
    print("SIMULATION: stated success rates and token counts (see the module's docstring), the real selector "
          "and history, the real pricing table.\n")
    header = (f"{'seed':>4}  {'strategy':<15}{'cost USD':>10}{'success':>9}{'attempts':>9}"
              f"{'vs sonnet':>11}{'vs opus':>9}   first tries (haiku/sonnet/opus)")
    print(header)
    print("-" * len(header))
    savings, ok_rates = [], []
    for seed in range(1, args.seeds + 1):
        work = tasks(args.tasks, random.Random(seed))
        results = {"selector": selector(work, args.max_tries), "always-sonnet": fixed("sonnet", work, args.max_tries),
                   "always-opus": fixed("opus", work, args.max_tries)}
        sonnet, opus = results["always-sonnet"], results["always-opus"]
        for name, r in results.items():
            firsts = "/".join(str(r.first_tries[x]) for x in TIERS) if r.first_tries else ""
            print(f"{seed:>4}  {name:<15}{float(r.cost):>10.2f}{r.solved / len(work):>9.1%}{r.attempts:>9}"
                  f"{float(r.cost / sonnet.cost):>10.2f}x{float(r.cost / opus.cost):>8.2f}x   {firsts}")
        sel = results["selector"]
        savings.append(1 - float(sel.cost / sonnet.cost))
        ok_rates.append(sel.solved >= sonnet.solved)
    mean = sum(savings) / len(savings)
    print(f"\nselector vs always-sonnet: {mean:.1%} cheaper on average over {args.seeds} seeds "
          f"(min {min(savings):.1%}); success rate at least always-sonnet's in {sum(ok_rates)}/{len(ok_rates)} seeds")
    verdict = ("met on every seed" if min(savings) >= 0.40 and all(ok_rates) else
               "met on average" if mean >= 0.40 and all(ok_rates) else "NOT met")
    print(f"target: at least 40 % cheaper than always-sonnet with no lower success rate: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
