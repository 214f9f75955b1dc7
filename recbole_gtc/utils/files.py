"""Paths and writes every command shares: ``~``/``$VAR`` expansion, output-folder checks
that fail with one line, and atomic writes (temporary name, then rename)."""

import os

from recbole_gtc.utils.errors import RecboleGTCError

#: Longest file or folder name accepted for outputs (most file systems allow 255 bytes;
#: run ids and temporary suffixes are appended to it).
MAX_NAME_BYTES = 200


def expand_path(path):
    """``~`` and ``$VARS`` expanded: every path option goes through this."""
    return os.path.expandvars(os.path.expanduser(str(path)))


def atomic_write(path, write):
    """``write(tmp)`` to ``path.<pid>.tmp`` in the same folder, then rename onto ``path``:
    a reader, or a process killed while writing, never leaves a partial file under ``path``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_output_dir(path, what, create=True, empty_unless=None, error=RecboleGTCError):
    """Expand ``path`` and check it can be written as the folder ``what``.

    Args:
        path (str or Path): the folder.
        what (str): its name in messages (``checkpoint_dir``, ``output folder``, ...).
        create (bool): create the folder now; otherwise only its parent.
        empty_unless (bool, optional): when given, a non-empty folder is refused unless it
            is True (``--force``).
        error (type): the exception raised, a :class:`RecboleGTCError`.

    Returns:
        str: the expanded path.

    Raises:
        error: ``<path>: <why>`` (a file in the way, not empty, cannot be created, not
        writable, name too long).
    """
    path = expand_path(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise error(f"{path}: {what} is a file, not a folder")
    if empty_unless is not None and os.path.isdir(path) and os.listdir(path) and not empty_unless:
        raise error(f"{path}: {what} is not empty (use --force to replace it)")
    if len(os.path.basename(os.path.normpath(path)).encode()) > MAX_NAME_BYTES:
        raise error(f"{path}: cannot create {what} (File name too long)")
    folder = path if create else os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise error(f"{folder}: cannot create {what} ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise error(f"{folder}: {what} is not writable")
    return path


def to_plain(value, leaf=None):
    """Python numbers, lists and string-keyed dicts in place of NumPy and torch values, recursively.

    RecBole's metrics and losses are NumPy scalars or 0-d tensors, which JSON, YAML and
    ``torch.load(weights_only=True)`` refuse; the run cache, the tuning files, ``run.json``
    and ``last.pth`` all store them through this one function. ``leaf`` (optional) maps every
    value that is not a container, after that conversion.
    """
    if isinstance(value, dict):
        return {str(k): to_plain(v, leaf) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v, leaf) for v in value]
    if hasattr(value, "tolist"):  # NumPy scalars and arrays, tensors
        value = value.tolist()
        if isinstance(value, list):
            return to_plain(value, leaf)
    return value if leaf is None else leaf(value)
