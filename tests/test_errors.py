"""The error catalogue: each bad input a user can give the runner exits 2 with exactly one
``error:`` line naming the key or file, no traceback, and nothing trained.

Most cases call the runner's ``main(argv)`` in-process (cheap); two run it as a real
process to check the exit status and stderr end to end. The MMRec import's catalogue is
in tests/test_prepare_mmrec.py, the configuration values' in tests/test_validation.py.
"""

import os
import runpy
import subprocess
import sys

import numpy as np
import pytest
from toydata import random_splits, write_dataset

from recbole_gtc.utils.utils import REPO_ROOT

RUNNER = os.path.join(REPO_ROOT, "run_recbole_gtc.py")
N_USERS, N_ITEMS = 12, 20


@pytest.fixture(scope="module")
def main():
    return runpy.run_path(RUNNER, run_name="recbole_gtc_runner")["main"]


@pytest.fixture
def data(tmp_path):
    """``tmp/data`` holding one good dataset (``good``) and broken ones."""
    root = tmp_path / "data"
    feats = {"image": np.random.default_rng(0).normal(size=(N_ITEMS, 4)).astype(np.float32)}
    splits = random_splits(N_USERS, N_ITEMS)
    write_dataset(root, "good", splits, feats, N_ITEMS)

    # A raw MMRec folder copied under the data path instead of being imported.
    raw = root / "rawmm"
    raw.mkdir()
    rows = [(u, i, x) for x, split in enumerate(("train", "valid", "test")) for u, i in splits[split]]
    (raw / "rawmm.inter").write_text(
        "userID\titemID\trating\ttimestamp\tx_label\n" + "".join(f"{u}\t{i}\t1\t0\t{x}\n" for u, i, x in rows))
    np.save(raw / "image_feat.npy", feats["image"])

    # Atomic files whose header has no :type (as written by hand or by pandas).
    write_dataset(root, "untyped", splits, feats, N_ITEMS)
    train = root / "untyped" / "untyped.train.inter"
    train.write_text(train.read_text().replace("user_id:token\titem_id:token", "user_id\titem_id", 1))

    # A header with a UTF-8 byte-order mark (as some editors save it).
    write_dataset(root, "bom", splits, feats, N_ITEMS)
    valid = root / "bom" / "bom.valid.inter"
    valid.write_bytes(b"\xef\xbb\xbf" + valid.read_bytes())

    # A benchmark split file missing, and a line with a field too many.
    write_dataset(root, "nosplit", splits, feats, N_ITEMS)
    (root / "nosplit" / "nosplit.valid.inter").unlink()
    write_dataset(root, "ragged", splits, feats, N_ITEMS)
    test = root / "ragged" / "ragged.test.inter"
    test.write_text(test.read_text() + "u1\t3\t7\n")
    (tmp_path / "list.yaml").write_text("- epochs\n- 5\n")
    (tmp_path / "broken.yaml").write_text("epochs: [1\n")
    return root


def _argv(data, *args):
    return [*args, f"--data_path={data}", "--use_gpu=False", f"--checkpoint_dir={data.parent / 'saved'}"]


def _cases(data):
    folder = str(data)
    hint = "python -m recbole_gtc.prepare mmrec SRC --dataset"
    return {
        "epochs=abc": (["--model=BPR", "--dataset=good", "--epochs=abc"],
                       "error: epochs='abc': must be an integer >= 1"),
        "knn_k=0": (["--model=GTC", "--dataset=good", "--knn_k=0"], "error: knn_k=0: must be an integer >= 1"),
        "embedding_size=0": (["--model=GTC", "--dataset=good", "--embedding_size=0"],
                             "error: embedding_size=0: must be an integer >= 1"),
        "topk=[0]": (["--model=BPR", "--dataset=good", "--topk=[0]"],
                     "error: topk=[0]: must be an integer >= 1 or a non-empty list of them"),
        "misspelt key": (["--model=BPR", "--dataset=good", "--learning_rat=0.1"],
                         "error: unknown key 'learning_rat' (did you mean 'learning_rate'?)"),
        "valid_metric not evaluated": (["--model=BPR", "--dataset=good", "--valid_metric=NDCG@30"],
                                       "error: valid_metric='NDCG@30': must be one of the evaluated metrics"),
        "second model's key bad": (["--model=BPR,GTC", "--dataset=good", "--tc_mode=x"],
                                   "error: tc_mode='x': must be one of symile | pairwise"),
        "config file not a mapping": (["--model=BPR", "--dataset=good", f"--config_files={data.parent}/list.yaml"],
                                      f"error: {data.parent}/list.yaml: must be a YAML mapping of key: value lines"),
        "config file not YAML": (["--model=BPR", "--dataset=good", f"--config_files={data.parent}/broken.yaml"],
                                 f"error: {data.parent}/broken.yaml: not valid YAML (expected ',' or ']', but got "
                                 f"'<stream end>' at line 2, column 1)"),
        "load_col without an id": (["--model=BPR", "--dataset=good", "--load_col={'inter':['user_id']}"],
                                   "error: load_col={'inter': ['user_id']}: inter must load the id field(s) item_id"),
        "two split files": (["--model=BPR", "--dataset=good", "--benchmark_filename=['train','valid']"],
                            "error: benchmark_filename=['train', 'valid']: must name the three split files"),
        "pairwise model without negatives": (["--model=BPR", "--dataset=good", "--train_neg_sample_args=None"],
                                             "error: train_neg_sample_args=None: BPR trains on (user, positive, "
                                             "negative) triples and needs negative sampling"),
        "raw MMRec .inter": (["--model=BPR", "--dataset=rawmm"],
                             f"error: {folder}/rawmm/rawmm.inter: a raw MMRec interaction file (header userID "
                             f"itemID rating timestamp x_label), not RecBole atomic format; convert an MMRec "
                             f"folder with: {hint} rawmm"),
        "header without types": (["--model=BPR", "--dataset=untyped"],
                                 f"error: {folder}/untyped/untyped.train.inter: not RecBole atomic format: header "
                                 f"columns have no ':type'"),
        "byte-order mark": (["--model=BPR", "--dataset=bom"],
                            f"error: {folder}/bom/bom.valid.inter: starts with a byte-order mark (BOM)"),
        "topk above the item count": (["--model=BPR", "--dataset=good", "--topk=[10,50]", "--valid_metric=Recall@10"],
                                      f"error: topk=[10, 50]: must be <= the number of items ({N_ITEMS}) of "
                                      f"dataset 'good' (full ranking)"),
        "split file missing": (["--model=BPR", "--dataset=nosplit"],
                               f"error: {folder}/nosplit/nosplit.valid.inter: interaction file not found"),
        "ragged line": (["--model=BPR", "--dataset=ragged"],
                        f"error: {folder}/ragged/ragged.test.inter: line "),
        "dataset given as a path": (["--model=BPR", f"--dataset={folder}/good/"],
                                    f"error: --dataset={folder}/good/: a path, not a dataset name; --dataset takes "
                                    f"the dataset's name and --data_path the folder that holds it: "
                                    f"--data_path={folder} --dataset=good"),
    }


CASE_NAMES = list(_cases(__import__("pathlib").Path("/x")))


def _check(returncode, stdout, stderr, expected):
    assert returncode == 2, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-2000:]
    assert errors[0].startswith(expected), f"\n{errors[0]}\n{expected}"
    assert "SUMMARY" not in stdout and "best valid" not in stdout  # nothing trained


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_is_one_error_line_and_exit_2(main, data, capsys, case):
    args, expected = _cases(data)[case]
    returncode = main(_argv(data, *args))
    captured = capsys.readouterr()
    _check(returncode, captured.out, captured.err, expected)


@pytest.mark.parametrize("case", ["epochs=abc", "raw MMRec .inter"])
def test_as_a_process(data, case):
    args, expected = _cases(data)[case]
    out = subprocess.run([sys.executable, RUNNER, *_argv(data, *args)], capture_output=True, text=True,
                         timeout=300, cwd=data.parent)
    _check(out.returncode, out.stdout, out.stderr, expected)


def test_the_good_dataset_passes_the_checks(data):
    """Guards the cases above: the same folder layout, unbroken, is accepted."""
    from recbole_gtc.config.configurator import MMConfig
    from recbole_gtc.config.validation import validate_config
    from recbole_gtc.data import create_dataset

    config = MMConfig("BPR", "good", config_dict={"data_path": str(data), "use_gpu": False}, cmd_args=[])
    validate_config(config)
    assert create_dataset(config).inter_num == N_USERS * 8


def test_a_dataset_folder_here_but_not_under_data_path_points_to_data_path(main, data, capsys, monkeypatch):
    """Standing in the folder that holds the dataset, --dataset=NAME alone looks elsewhere."""
    monkeypatch.chdir(data)
    returncode = main(["--model=BPR", "--dataset=good", "--use_gpu=False", f"--checkpoint_dir={data.parent / 's'}"])
    captured = capsys.readouterr()
    _check(returncode, captured.out, captured.err, "error: --dataset=good: not found under data_path ")
    assert captured.err.rstrip().endswith(f"but ./good is a folder here; --dataset takes the dataset's name and "
                                          f"--data_path the folder that holds it: --data_path={data} --dataset=good")
