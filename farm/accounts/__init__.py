"""Accounts: users, their roles, passwords and API tokens."""
