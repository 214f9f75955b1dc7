"""Reading and validating one modality's frozen feature matrix (a 2-D float ``.npy``).

Shared by the MMRec importer and :class:`~recbole_gtc.data.MultiModalDataset`, so a
file is judged by the same rules when it is imported and when it is trained on.
"""

import os

import numpy as np

from recbole_gtc.utils.errors import RecboleGTCError

#: The largest magnitude of the dtype the models use for features (float32).
MODEL_FLOAT_MAX = float(np.finfo(np.float32).max)
_FINITE_CHECK_ROWS = 4096  # rows checked for NaN/inf at a time: bounded memory on memory-mapped files


def first_line(exc):
    """The first line of an exception's message (for one-line errors)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def load_feature_matrix(path, error=RecboleGTCError):
    """Open ``path`` memory-mapped and check it: present, a readable ``.npy``, 2-D, float, finite
    in float32 (the dtype the models use; a float64 value beyond float32's range is refused).

    Args:
        path (str or os.PathLike): the ``.npy`` file.
        error (type): exception raised on a problem; its message is one line naming ``path``.

    Returns:
        np.ndarray: the ``(rows, dim)`` matrix, memory-mapped (read-only).
    """
    if not os.path.isfile(path):
        raise error(f"{path}: feature file not found")
    try:
        feat = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise error(f"{path}: cannot be read as a .npy array ({first_line(exc)})") from None
    if feat.ndim != 2:
        raise error(f"{path}: feature matrix must be 2-D (items x dims), got shape {feat.shape}")
    if feat.dtype.kind != "f":
        raise error(f"{path}: feature matrix must be floating point, got dtype {feat.dtype}")
    wider = np.finfo(feat.dtype).max > MODEL_FLOAT_MAX  # float64: finite values may overflow float32
    for start in range(0, feat.shape[0], _FINITE_CHECK_ROWS):
        block = np.asarray(feat[start:start + _FINITE_CHECK_ROWS])
        if not np.isfinite(block).all():
            row = start + int(np.argwhere(~np.isfinite(block))[0, 0])
            raise error(f"{path}: feature matrix has NaN or inf values (first in row {row})")
        if wider:
            # The models read features as float32: check the values in that dtype, not the file's.
            too_large = np.abs(block) > MODEL_FLOAT_MAX
            if too_large.any():
                row, col = (int(x) for x in np.argwhere(too_large)[0])
                raise error(f"{path}: value {block[row, col]:.3g} in row {start + row} overflows float32, the dtype "
                            f"the models use (largest finite float32: {MODEL_FLOAT_MAX:.3g}); rescale the features")
    return feat
