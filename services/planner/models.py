"""Model choice per attempt (pure): complexity picks the tier, a retry escalates one tier."""

from __future__ import annotations

TIERS = ["haiku", "sonnet", "opus"]
BY_COMPLEXITY = {"low": "haiku", "medium": "sonnet", "high": "opus"}


def select_model(complexity: str, attempt: int = 1, *, default: str = "sonnet",
                 budget_left_fraction: float = 1.0) -> str:
    """A model alias for this attempt. Low budget (under 10% left) caps at the cheapest tier."""
    base = BY_COMPLEXITY.get(complexity, default if default in TIERS else "sonnet")
    if budget_left_fraction < 0.1:
        return TIERS[0]
    index = min(TIERS.index(base) + max(0, attempt - 1), len(TIERS) - 1)
    return TIERS[index]
