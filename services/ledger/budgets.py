"""Budget decisions (pure): spent so far against the run's limit gives at most one warning
and one exhaustion per run."""

from __future__ import annotations


def budget_level(spent_usd: float, limit_usd: float, warn_at_fraction: float) -> str | None:
    """'exhausted', 'warning' or None for a run that has spent `spent_usd`. A limit of 0 means no budget."""
    if limit_usd <= 0:
        return None
    if spent_usd >= limit_usd:
        return "exhausted"
    if spent_usd >= limit_usd * warn_at_fraction:
        return "warning"
    return None
