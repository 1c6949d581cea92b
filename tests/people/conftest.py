"""Fixtures for the People, lifecycle and history tests: the security world's personas and study."""

from tests.security.conftest import world  # noqa: F401  (the personas, s1 and s2, a leased assignment)
