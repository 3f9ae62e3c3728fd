"""Training jobs: the SQLite store and the spawned worker process."""
