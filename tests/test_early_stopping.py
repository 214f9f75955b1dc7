"""Which epoch is best when validation scores tie (``best_on_tie``): RecBole's rule (the later
epoch, patience restarts) by default, MMRec's released rule (the earlier epoch, the tie counts
toward stopping) on request. Metrics are rounded, so ties are common where a model barely learns."""

import glob

import pytest
import torch
from recbole.utils import early_stopping

from recbole_gtc.quick_start.quick_start import load_config, run_recbole_gtc
from recbole_gtc.trainer.run import fingerprint
from recbole_gtc.trainer.trainer import MMTrainer, strict_early_stopping


@pytest.mark.parametrize("bigger", [True, False])
def test_the_rules_differ_exactly_on_ties(bigger):
    sign = 1 if bigger else -1
    best, tie, better, worse = sign * 0.2, sign * 0.2, sign * 0.3, sign * 0.1
    # a tie: RecBole takes it as the new best and restarts the patience; MMRec does not
    assert early_stopping(tie, best, 1, 2, bigger) == (tie, 0, False, True)
    assert strict_early_stopping(tie, best, 1, 2, bigger) == (best, 2, False, False)
    assert strict_early_stopping(tie, best, 2, 2, bigger) == (best, 3, True, False)
    # anything else: the same answer
    for value in (better, worse):
        for step in (0, 2):
            assert strict_early_stopping(value, best, step, 2, bigger) == early_stopping(value, best, step, 2, bigger)


SCORES = [0.10, 0.20, 0.20, 0.20, 0.20, 0.20, 0.20, 0.20]  # a plateau after epoch 1
# stopping_step 3: MMRec's rule stops after the 4th tie in a row (epoch 5), RecBole's never stops


@pytest.mark.parametrize("rule, best_epoch, epochs_run", [("later", 7, 8), ("earlier", 1, 6)])
def test_a_plateau_selects_by_the_rule(tmp_path, tiny, monkeypatch, rule, best_epoch, epochs_run):
    evaluated = []
    real_valid_epoch = MMTrainer._valid_epoch

    def scripted(self, valid_data, show_progress=False):
        score, result = real_valid_epoch(self, valid_data, show_progress)
        evaluated.append(self.model.state_dict()["user_embedding.weight"].clone())
        return SCORES[len(evaluated) - 1], result

    monkeypatch.setattr(MMTrainer, "_valid_epoch", scripted)
    result = run_recbole_gtc("BPR", "tiny", config_dict={
        "data_path": tiny, "epochs": len(SCORES), "stopping_step": 3, "best_on_tie": rule, "state": "WARNING",
        "checkpoint_dir": str(tmp_path / "saved")})
    assert len(evaluated) == epochs_run
    assert result["best_valid_score"] == SCORES[best_epoch]
    # best.pth, which the test loads, holds the selected epoch's weights
    (path,) = glob.glob(str(tmp_path / "saved" / "*" / "best.pth"))
    best = torch.load(path, weights_only=False)
    assert torch.equal(best["state_dict"]["user_embedding.weight"], evaluated[best_epoch])


def test_the_default_rule_keeps_earlier_fingerprints_and_the_other_rule_changes_them(tmp_path, tiny):
    """Runs recorded before ``best_on_tie`` existed used RecBole's rule: at ``later`` the key is
    left out of the fingerprint (their cache entries and resumes stay valid); ``earlier`` is hashed."""
    def digest(**extra):
        config = load_config("BPR", "tiny", config_dict={"data_path": tiny, "checkpoint_dir": str(tmp_path), **extra})
        return config, fingerprint(config)

    config, default = digest()
    del config.final_config_dict["best_on_tie"]  # a configuration from before the key
    assert fingerprint(config) == default
    assert digest(best_on_tie="earlier")[1] != default
