"""Finished runs of a comparison, stored so that they are never trained twice.

A run is stored under the fingerprint of its full configuration
(:func:`recbole_gtc.trainer.run.fingerprint`: every result-relevant key, the seed included,
a digest of the dataset files and the library versions), as two files in
``<results_dir>/<dataset>/runs/``:

* ``<fingerprint>.npz``: the test users and their per-user metric values;
* ``<fingerprint>.json``: the rest of the run record (see :mod:`recbole_gtc.study`).

The ``.json`` is written last (atomically), so its presence means the run is complete;
a comparison killed at any point re-runs only what has no ``.json``.
"""

import json
import os

from recbole_gtc.trainer.run import load_per_user, save_per_user
from recbole_gtc.utils.files import atomic_write, check_output_dir, to_plain

#: Record fields stored in the .json (per-user values go to the .npz).
_JSON_FIELDS = ("label", "model", "dataset", "seed", "run_id", "run_dir", "fingerprint", "eval_protocol",
                "valid_result", "test_result", "epochs", "train_seconds_per_epoch")


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
            with open(json_path) as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            return None
        record["users"], record["per_user"] = None, None
        if os.path.isfile(npz_path):
            try:
                record["users"], record["per_user"] = load_per_user(npz_path)
            except (OSError, ValueError, KeyError):
                return None  # damaged: train it again rather than report half a run
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
