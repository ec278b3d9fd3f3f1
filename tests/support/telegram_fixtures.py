"""Pytest fixtures (telegram_fixtures)."""
