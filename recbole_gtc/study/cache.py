"""Finished runs of a comparison, stored so that they are never trained twice.

A run is stored under the fingerprint of its full configuration
(:func:`recbole_gtc.trainer.run.fingerprint`: every result-relevant key, the seed included,
a digest of the dataset files and the library versions), as two files in
``<results_dir>/<dataset>/runs/``:

* ``<fingerprint>.npz``: the test users and their per-user metric values;
* ``<fingerprint>.json``: the rest of the run record (see :mod:`recbole_gtc.study`).

The ``.json`` is written last (atomically), so its presence means the run is complete;
a comparison killed at any point re-runs only what has no ``.json``. An entry that is
damaged all the same (a truncated ``.npz``, a ``.json`` emptied to ``{}`` or ``[]``, a field
missing, another run's fingerprint) counts as absent: that run is trained again.
"""

import json
import os

from recbole_gtc.trainer.run import load_per_user, save_per_user
from recbole_gtc.utils.files import atomic_write, check_output_dir, to_plain

#: Record fields stored in the .json (per-user values go to the .npz).
_JSON_FIELDS = ("label", "model", "dataset", "seed", "run_id", "run_dir", "fingerprint", "eval_protocol",
                "valid_result", "test_result", "epochs", "train_seconds_per_epoch")


def _complete(record, key):
    """Whether a stored ``.json`` is a whole run record of ``key``."""
    if not isinstance(record, dict) or any(name not in record for name in _JSON_FIELDS):
        return False
    if record["fingerprint"] != key or not isinstance(record["test_result"], dict) or not record["test_result"]:
        return False
    if not isinstance(record["valid_result"], dict):
        return False
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in record["test_result"].values())


class RunCache:
    """Finished runs under ``folder``, keyed by configuration fingerprint."""

    def __init__(self, folder):
        self.folder = check_output_dir(folder, "results_dir")

    def _paths(self, key):
        return os.path.join(self.folder, f"{key}.json"), os.path.join(self.folder, f"{key}.npz")

    def get(self, key, label=None):
        """The stored record for ``key`` (relabelled ``label``: two specs can mean the same
        configuration), or ``None`` when that run has not finished."""
        json_path, npz_path = self._paths(key)
        try:
            with open(json_path, encoding="utf-8") as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            return None
        if not _complete(record, key):
            return None  # damaged (e.g. `{}`, `[]`, a field missing): train it again
        record["users"], record["per_user"] = None, None
        if os.path.isfile(npz_path):
            try:
                users, per_user = load_per_user(npz_path)
            except Exception:  # truncated zip (BadZipFile), missing array, bad dtype, ...
                return None  # damaged: train it again rather than report half a run
            if not per_user or any(len(values) != len(users) for values in per_user.values()):
                return None
            record["users"], record["per_user"] = users, per_user
        if label is not None:
            record["label"] = label
        return record

    def put(self, key, record):
        json_path, npz_path = self._paths(key)
        if record.get("per_user"):
            save_per_user(npz_path, record["users"], record["per_user"])
        # JSON-safe: RecBole's metric values are NumPy scalars
        payload = {name: to_plain(record.get(name)) for name in _JSON_FIELDS}

        def write(tmp):
            with open(tmp, "w") as handle:
                json.dump(payload, handle, indent=1, sort_keys=True)

        atomic_write(json_path, write)
