"""How the command-line tools log: the answer on stdout, library chatter only when asked for.

Every absl CLI of the project calls `quiet_unless_verbose()` first thing in its `main`. Unless
the command line gives absl's `--verbosity` / `-v` (`-v 0`: INFO, `-v 1`: DEBUG), Python logging
is set to WARNING: a command prints its answer and, on stderr, warnings and errors only.
Long-running commands pass `own_progress=True`: the project's own INFO lines (training steps,
examples written) still show, the libraries' INFO lines (TensorFlow, tf-models, Keras) do not.

TensorFlow's C++ runtime writes a few start-up lines (oneDNN, CUDA probing) when it is imported,
before any flag is read; `TF_CPP_MIN_LOG_LEVEL=2` in the environment hides them.
"""

from __future__ import annotations

import logging as std_logging
import os

from absl import flags
from absl import logging

# The project's packages (siblings of this one, in a checkout and when installed).
_OWN_DIRS = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), package) + os.sep
    for package in ("vocab", "teacher_scoring", "beam_jobs", "student"))


class _OwnInfoOnly(std_logging.Filter):
    """Passes WARNING and above, and lower records logged from the project's own modules."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return (record.levelno >= std_logging.WARNING or
                os.path.abspath(record.pathname).startswith(_OWN_DIRS))


_OWN_INFO_ONLY = _OwnInfoOnly()


def verbosity_requested() -> bool:
    """Whether the command line set absl's --verbosity / -v."""
    return "verbosity" in flags.FLAGS and flags.FLAGS["verbosity"].present > 0


def quiet_unless_verbose(own_progress: bool = False) -> None:
    """Sets the logging of a CLI run (call it in main, after absl parsed the flags).

    Args:
      own_progress: keep the project's own INFO lines (long jobs); otherwise only warnings and
        errors are logged.
    """
    if verbosity_requested():
        return
    # TensorFlow's Python logger has its own stderr handler besides absl's: quiet it directly.
    std_logging.getLogger("tensorflow").setLevel(std_logging.WARNING)
    if own_progress:
        logging.set_verbosity(logging.INFO)
        handler = logging.get_absl_handler()
        if _OWN_INFO_ONLY not in handler.filters:
            handler.addFilter(_OWN_INFO_ONLY)
    else:
        logging.set_verbosity(logging.WARNING)
