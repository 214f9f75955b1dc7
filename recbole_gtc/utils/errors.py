"""The package's one exception root.

Every error a user can cause (bad input, missing data, a broken file, a refused
checkpoint) is a :class:`RecboleGTCError` or a subclass of it, so the runner, the
``prepare`` command and library users catch the package's errors in one place. The
message is one line that names the file or key and the problem; the command-line
entry points print it as ``error: <message>`` and exit with status 2.
"""

import contextlib
import signal


class RecboleGTCError(Exception):
    """A user-facing problem; the message is one line naming the file or key."""


class DatasetImportError(RecboleGTCError, ValueError):
    """A dataset folder that cannot be imported (``python -m recbole_gtc.prepare mmrec``)."""


class SynthConfigError(RecboleGTCError, ValueError):
    """Generator parameters that cannot produce a dataset (``prepare synthetic``)."""


class MissingBuildDependency(RecboleGTCError, RuntimeError):
    """An optional package needed only to rebuild a bundled dataset is not installed."""


class WriteError(RecboleGTCError):
    """A file the package writes could not be written (the previous version, if any, is intact).

    Attributes:
        path (str): the file that was being written.
    """

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


class DiskFullError(WriteError):
    """No space left on the device (or the user's quota) while writing ``path``."""


class DivergenceError(RecboleGTCError):
    """Training diverged: a non-finite loss or non-finite weights."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch scheduler's time limit, ``docker stop``), raised in the main
    thread while :func:`sigterm_as_interrupt` is active.

    A :class:`KeyboardInterrupt`, so it takes Ctrl-C's path: the checkpoints stay, ``run.json``
    says ``interrupted`` and the run can be resumed; the exit status is 143 (128 + 15).
    """


def was_terminated(exc):
    """Whether the :class:`KeyboardInterrupt` ``exc`` came from SIGTERM (not Ctrl-C)."""
    return isinstance(exc, Terminated) or getattr(exc, "terminated", False)


def stop_words(exc):
    """``"SIGTERM"`` or ``"Ctrl-C"``: what stopped the process, for an error line."""
    return "SIGTERM" if was_terminated(exc) else "Ctrl-C"


def stop_status(exc):
    """The exit status after a :class:`KeyboardInterrupt`: 143 for SIGTERM, 130 for Ctrl-C."""
    return 143 if was_terminated(exc) else 130


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While active (the command-line entry points), SIGTERM raises :class:`Terminated` in the
    main thread instead of ending the process at once, so a run records ``interrupted`` and says
    how to resume. The previous handler is restored on exit; outside the main thread (where
    Python cannot install handlers) nothing changes."""

    def terminate(signum, frame):
        raise Terminated("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM during a run, carrying one line saying what was kept and how
    to continue.

    A :class:`KeyboardInterrupt`, so code that lets a Ctrl-C through still does; the command-line
    entry points print ``error: <message>`` and exit with status 130 (143 when ``terminated``).
    """

    def __init__(self, message, terminated=False):
        super().__init__(message)
        self.message = message
        self.terminated = terminated

    def __str__(self):
        return self.message
