"""MPQ's user-facing layer: the `mpq` CLI now; the FastAPI service arrives with its issue."""
