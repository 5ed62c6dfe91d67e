"""Use cases: tie the pure domain to the store (and later the matcher and the ledger)."""
