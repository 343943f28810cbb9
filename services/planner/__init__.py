"""The planner service: plans (Session 0), dependency resolution and the scheduler."""
