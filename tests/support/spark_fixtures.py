"""Pytest fixtures (spark_fixtures)."""
