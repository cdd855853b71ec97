"""Hypothesis profiles for the core's unit tests."""

from __future__ import annotations

from hypothesis import settings

# Used by test_coverage.py's subprocess: under coverage tracing every example runs slower, and the
# coverage measured must not depend on which examples happen to be drawn.
settings.register_profile("coverage", deadline=None, derandomize=True, database=None)
