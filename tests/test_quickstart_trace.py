"""The quick start's first epochs, to float rounding, on any CPU.

CI compares the quick start's ``SUMMARY`` line (GTC on synth-mm to early stopping, hundreds of
epochs) with README.md within the spread measured across CPU kinds (docs/reproducibility.md):
early stopping amplifies the last bits of float sums, so that check must be loose. This one
does not amplify rounding: the same configuration for three epochs, whose training losses must
match the trace below within ``RTOL`` on every CPU, and whose test metrics must match within
``METRIC_ATOL``.

``RTOL`` is grounded in a measurement (docs/reproducibility.md): under eight CPU-kernel
settings (the AVX2 pin, native AVX-512/AMX kernels, one or two threads, scalar ATen with
``MKL_CBWR=COMPATIBLE``, ...) the three losses agreed to 6e-8 relative and the metrics to
all four printed decimals. A change of the model, the sampler or the data path moves them far
more. After such an intended change, regenerate the trace with
``python tests/test_quickstart_trace.py`` and say why in the commit.
"""

import json
import sys

import pytest

from recbole_gtc.quick_start.quick_start import run_recbole_gtc
from recbole_gtc.trainer import trainer as trainer_module

EPOCHS = 3
#: GTC, synth-mm, its YAML defaults (seed 999), recorded with torch's own kernels (the default)
#: and two threads on an Intel Xeon with AVX-512 and AMX.
TRACE = {"losses": [34.17453575134277, 34.13475751876831, 34.02472734451294],
         "test recall@20": 0.127, "test ndcg@20": 0.0574}
RTOL = 1e-5  # about 180x the largest difference measured across kernel settings (6e-8)
METRIC_ATOL = 0.002  # one or two users' top-20 hits (a tie broken the other way)


def quickstart_trace(checkpoint_dir, epochs=EPOCHS):
    """The quick start's configuration for ``epochs`` epochs: its per-epoch training losses and
    test metrics, in :data:`TRACE`'s form."""
    losses = []
    original = trainer_module.MMTrainer._train_epoch

    def recorded(self, *args, **kwargs):
        loss = original(self, *args, **kwargs)
        losses.append(float(loss))
        return loss

    trainer_module.MMTrainer._train_epoch = recorded
    try:
        result = run_recbole_gtc("GTC", "synth-mm", config_dict={
            "epochs": epochs, "checkpoint_dir": str(checkpoint_dir), "graph_cache_dir": None, "state": "WARNING"})
    finally:
        trainer_module.MMTrainer._train_epoch = original
    return {"losses": losses, "test recall@20": result["test_result"]["recall@20"],
            "test ndcg@20": result["test_result"]["ndcg@20"]}


def test_quickstart_first_epochs_match_the_trace_on_any_cpu(tmp_path):
    got = quickstart_trace(tmp_path)
    assert got["losses"] == pytest.approx(TRACE["losses"], rel=RTOL, abs=0), got
    for key in ("test recall@20", "test ndcg@20"):
        assert abs(got[key] - TRACE[key]) <= METRIC_ATOL, (key, got)


if __name__ == "__main__":  # print this machine's trace (to regenerate TRACE after an intended change)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        json.dump(quickstart_trace(folder), sys.stdout)
    print()
