"""Database: models, engine, unit of work and the Alembic migrations shipped in the package."""
