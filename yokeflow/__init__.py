"""YokeFlow: run many AI coding agents in parallel on one codebase."""

__version__ = "0.1.0"
