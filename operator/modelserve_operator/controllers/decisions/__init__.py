"""Pure decisions: observations in, what to do and what to report out.

No I/O, no clock (time is passed in), no Kubernetes client: every function here is
unit-tested with plain values. import-linter keeps it that way (pyproject.toml).
"""
