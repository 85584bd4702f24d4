"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest

from fedsynth.paths import data_directory


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder with the real data files, by the data-directory rule (fedsynth.paths). Without
    it the test is skipped locally and fails under CI (env CI set), so CI never silently skips
    real-data tests."""
    folder = data_directory()
    if folder is None:
        message = "no data directory: set FEDSYNTH_DATA_DIR to the folder holding law_school.csv and dutch.csv"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder
