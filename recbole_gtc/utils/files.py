"""Paths and writes every command shares: ``~``/``$VAR`` expansion, output-folder checks
that fail with one line, and atomic writes (temporary name, then rename)."""

import errno
import os

import torch

from recbole_gtc.utils.errors import DiskFullError, RecboleGTCError, WriteError

#: Longest file or folder name accepted for outputs (most file systems allow 255 bytes;
#: run ids and temporary suffixes are appended to it).
MAX_NAME_BYTES = 200


def expand_path(path):
    """``~`` and ``$VARS`` expanded: every path option goes through this."""
    return os.path.expandvars(os.path.expanduser(str(path)))


#: errno values of a full disk (ENOSPC) or an exhausted quota (EDQUOT).
DISK_FULL_ERRNOS = frozenset(code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None)


def is_disk_full(exc):
    """True when ``exc`` (or an exception it was raised from) is a full disk or quota."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def atomic_write(path, write):
    """``write(tmp)`` to ``path.<pid>.tmp`` in the same folder, flushed to disk, then renamed onto
    ``path``: a reader, a process killed while writing or a write that fails (a full disk) never
    leaves a partial file under ``path``, and whatever ``path`` held before stays until the new
    content is complete.

    Raises:
        DiskFullError: no space left (or quota exhausted) in ``path``'s folder; ``path`` is unchanged.
        WriteError: any other failure of the file system (read-only, permission); ``path`` is unchanged.
    """
    folder = os.path.dirname(path) or "."
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(folder, exist_ok=True)
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except Exception as exc:
        # torch's writer reports a failed write as RuntimeError("unexpected pos ...") raised while
        # handling the OSError(ENOSPC) of the file object: the cause is found in the chain.
        if isinstance(exc, OSError) or is_disk_full(exc):
            raise _write_error(path, exc) from exc
        raise
    finally:
        if os.path.exists(tmp):
            try:
                os.remove(tmp)
            except OSError:
                pass


def _fsync(path):
    # The rename must not reach the disk before the data it names (a power cut would leave an
    # empty or partial file under the real name on some file systems).
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(path, exc):
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    if is_disk_full(exc):
        return DiskFullError(f"{folder}: no space left on device (writing {name})", path)
    return WriteError(f"{path}: cannot write ({getattr(exc, 'strerror', None) or exc})", path)


def atomic_save(obj, path, **kwargs):
    """``torch.save`` through :func:`atomic_write`. The data goes through a Python file object,
    so a full disk is an ``OSError`` with its errno (torch's own file writer reports it as
    ``RuntimeError: unexpected pos``) and becomes a :class:`DiskFullError`."""

    def write(tmp):
        with open(tmp, "wb") as handle:
            torch.save(obj, handle, **kwargs)

    atomic_write(path, write)


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
