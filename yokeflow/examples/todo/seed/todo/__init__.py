"""todo: a to-do list with a SQLite store, a JSON HTTP API and a command line."""

__version__ = "0.1.0"
