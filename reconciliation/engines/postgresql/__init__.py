"""The PostgreSQL engine: set-based, in the database (see :mod:`.run` for its steps)."""
