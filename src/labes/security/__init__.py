"""Accounts, roles, sessions, API tokens and the hash-chained audit trail."""
