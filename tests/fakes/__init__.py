"""Test doubles: `FakeStack` behind the same `StackOps` interface as the real adapter."""
