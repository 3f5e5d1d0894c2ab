"""cli_logging: which records a quiet CLI lets through."""

import logging
import os

from absl import logging as absl_logging

from teacher_scoring import cli_logging
from tests.conftest import REPO_ROOT


def record(pathname: str, level: int) -> logging.LogRecord:
    return logging.LogRecord("absl", level, pathname, 1, "message", (), None)


def test_own_progress_keeps_the_projects_info_lines_only():
    own = str(REPO_ROOT / "student" / "trainer.py")
    library = os.path.join(os.path.dirname(absl_logging.__file__), "__init__.py")
    lookalike = str(REPO_ROOT / "students_notes" / "trainer.py")
    keep = cli_logging._OwnInfoOnly().filter  # pylint: disable=protected-access
    assert keep(record(own, logging.INFO))
    assert not keep(record(library, logging.INFO))
    assert not keep(record(lookalike, logging.INFO))
    assert keep(record(library, logging.WARNING)) and keep(record(library, logging.ERROR))
