"""The embedded store on one SQLite file: the store (store.py), its schema and
migrations (schema.py), and how records map to rows (rows.py)."""
