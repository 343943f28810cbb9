"""Executor service: turns a ready task into checked, committed work in its own worktree.

The agent runtime (tools, loop, prompt) lives in `services.executor.agent`."""
