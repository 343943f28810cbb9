"""Ledger: projects every event into PostgreSQL, keeps the cost ledger and enforces budgets."""
