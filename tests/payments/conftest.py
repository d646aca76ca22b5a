"""Fixtures for the payment tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def url(db) -> str:
    """DATABASE_URL for the test database, as a `flows` command run by the operator would have it."""
    if db.__class__.__name__.startswith("Sqlite"):
        return f"sqlite:///{db.database}"
    return os.environ["TEST_DATABASE_URL"]
