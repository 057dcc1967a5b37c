"""Tasks: plain functions that run locally, in CI tests, and inside the cluster as Jobs."""
