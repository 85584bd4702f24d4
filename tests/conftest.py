"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder with the real data files, from $FEDSYNTH_DATA_DIR. Without it the test is
    skipped locally and fails under CI (env CI set), so CI never silently skips real-data tests."""
    value = os.environ.get("FEDSYNTH_DATA_DIR")
    if not value:
        message = "FEDSYNTH_DATA_DIR is not set (the folder holding law_school.csv and dutch.csv)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(value)
