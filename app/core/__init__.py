"""What every room of the service shares: settings (config.py, pydantic-settings), messages without server
paths (messages.py), shutdown (shutdown.py) and the Prometheus metrics (metrics.py). Imports no other room.
"""
