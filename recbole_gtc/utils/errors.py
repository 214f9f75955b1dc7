"""The package's one exception root.

Every error a user can cause (bad input, missing data, a broken file, a refused
checkpoint) is a :class:`RecboleGTCError` or a subclass of it, so the runner, the
``prepare`` command and library users catch the package's errors in one place. The
message is one line that names the file or key and the problem; the command-line
entry points print it as ``error: <message>`` and exit with status 2.
"""


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


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGINT) during a run, carrying one line saying what was kept and how to continue.

    A :class:`KeyboardInterrupt`, so code that lets a Ctrl-C through still does; the command-line
    entry points print ``error: <message>`` and exit with status 130.
    """

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message
