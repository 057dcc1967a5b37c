"""opsplane automation: the runbooks' imperative steps as commands and stack operations.

Imports `contract`; of `components` only `automation.stack` (which runs the program). Nothing of
ours imports `automation` (tests and benchmarks do). Inside: commands → operations → tasks, see
README "Layout" (tests/test_layers.py checks it).
"""
