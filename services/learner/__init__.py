"""Learner: extracts learnings from finished tasks into per-domain expertise files."""
