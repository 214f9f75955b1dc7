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
