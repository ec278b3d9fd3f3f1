"""Persistence: SQLAlchemy async models, repositories returning frozen DTOs, migrations."""
