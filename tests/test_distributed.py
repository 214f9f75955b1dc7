"""Multi-process training (``--nproc``): RecBole's distributed path on CPU with gloo."""

import json
import os
import re
import socket
import time

import pytest
from planted import NAME, planted_roots

from recbole_gtc import cli
from recbole_gtc.quick_start.distributed import distributed_settings, run_distributed
from recbole_gtc.quick_start.quick_start import run_recbole_gtc
from recbole_gtc.utils.errors import RecboleGTCError

BUDGET = {"epochs": 8, "learning_rate": 0.01, "train_batch_size": 512, "stopping_step": 100, "use_gpu": False,
          "state": "WARNING", "graph_cache_dir": None}


def free_port():
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """GTC on the planted data, one process and two, same budget and seed."""
    root = planted_roots(tmp_path_factory)["real"]
    saved = tmp_path_factory.mktemp("dist")
    config = dict(BUDGET, data_path=root)
    single = run_recbole_gtc("GTC", NAME, config_dict=dict(config, checkpoint_dir=str(saved / "one")))
    args = [f"--{k}={v}" for k, v in dict(config, checkpoint_dir=str(saved / "two")).items()]
    double = run_distributed("GTC", NAME, distributed_settings(nproc=2, port=free_port()), cmd_args=args)
    return single, double, saved / "two"


def test_two_processes_reach_the_one_process_quality(runs):
    single, double, _ = runs
    assert double["world_size"] == 2
    one, two = single["test_result"]["recall@20"], double["test_result"]["recall@20"]
    # 200 items: random ranking gives recall@20 of about 0.1; the planted content gives far more.
    assert one > 0.2 and two > 0.2, (one, two)
    assert abs(one - two) < 0.05, (one, two)
    # every rank ranks every test user: the per-user values cover the same users as one process
    assert sorted(double["users"]) == sorted(single["users"])


def test_one_shared_run_folder_written_by_rank_zero(runs):
    _, double, folder = runs
    runs_made = [d for d in os.listdir(folder) if os.path.isfile(os.path.join(folder, d, "run.json"))]
    assert runs_made == [double["run_id"]]
    run_dir = os.path.join(folder, double["run_id"])
    with open(os.path.join(run_dir, "run.json")) as handle:
        assert json.load(handle)["status"] == "finished"
    assert os.path.isfile(os.path.join(run_dir, "best.pth"))
    assert not os.path.exists(os.path.join(run_dir, "last.pth"))


def test_recommend_scores_a_checkpoint_of_a_multi_process_run(runs, capsys):
    """The stored configuration is rank 0's, whose training loader asked for the process group
    ("Default process group has not been initialized"); scoring is one process's."""
    _, double, _ = runs
    with open(os.path.join(double["run_dir"], "run.json")) as handle:
        assert json.load(handle)["config"]["nproc"] == 2
    users = double["users"][:3]
    code = cli.main(["--recommend", f"--checkpoint={double['run_dir']}", f"--users={','.join(users)}", "--topk=5"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = out.strip().splitlines()
    assert rows[0] == "user,rank,item,score" and len(rows) == 1 + 5 * len(users)
    assert [row.split(",")[0] for row in rows[1::5]] == users


@pytest.mark.parametrize("kwargs, message", [
    ({"nproc": 0}, "--nproc=0: must be at least 1"),
    ({"nproc": 2, "world_size": 4, "group_offset": 3}, "ranks 3..4 do not fit in --world_size=4"),
    ({"nproc": 2, "port": 70000}, "--port=70000: must be a TCP port"),
    ({"nproc": 2, "peer_timeout": 0}, "--peer_timeout=0: must be a number of seconds > 0"),
])
def test_bad_flags_are_refused(kwargs, message):
    with pytest.raises(RecboleGTCError, match=message.replace(".", r"\.").replace("(", r"\(")):
        distributed_settings(**kwargs)


def test_one_process_needs_no_process_group():
    assert distributed_settings(nproc=1) is None
    assert distributed_settings(nproc=1, world_size=2) == {
        "world_size": 2, "nproc": 1, "offset": 0, "ip": "localhost", "port": 5678, "peer_timeout": 600.0}


@pytest.mark.parametrize("extra, message", [
    (["--seeds=2"], "a comparison study trains in one process"),
    (["--resume"], "cannot be combined with --nproc"),
])
def test_runner_refuses_what_one_process_does(capsys, extra, message, tmp_path):
    code = cli.main(["--model=BPR", "--dataset=synth-mm", "--nproc=2", f"--checkpoint_dir={tmp_path}"] + extra)
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_a_missing_peer_is_said_and_given_up_on_after_peer_timeout(capsys, tmp_path):
    """--world_size=2 with one process: rank 0 says what it waits for, then one error line,
    instead of waiting torch's 30 minutes in silence."""
    start = time.monotonic()
    code = cli.main(["--model=BPR", "--dataset=synth-mm", "--world_size=2", f"--port={free_port()}",
                     "--peer_timeout=2", f"--checkpoint_dir={tmp_path}", "--use_gpu=False"])
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: multi-process training failed: --world_size=2: not every process joined tcp://localhost:"), err
    # the words in brackets are torch's ("Timed out after 3 seconds waiting for clients. 1/2 clients joined.")
    assert re.search(r"within --peer_timeout=2 s \(.+\); start the other machines' commands with the same --ip, "
                     r"--port and --world_size, or lower --world_size$", errors[0]), errors[0]
    assert time.monotonic() - start < 120
