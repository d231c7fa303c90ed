"""The chained, resumable run of every stage: the stage API (each recipe in its own process), the
pseudo-label rounds, the console lines and the results table."""
