"""Pytest fixtures (db_fixtures)."""
