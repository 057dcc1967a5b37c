"""opsplane automation: the runbooks' imperative steps as commands and stack operations."""
