"""The GPU path, checked on a CPU: device choice, resume, fingerprints, loss scaling, precision
checks and deterministic kernels, with the device queries patched where a GPU is needed
(issue 23). The ``gpu``-marked tests at the end run the same paths on a real GPU and skip
without CUDA (scripts/gpu_check.sh runs them)."""

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed
from recbole.utils import init_seed

from recbole_gtc import cli
from recbole_gtc.config.configurator import MMConfig
from recbole_gtc.quick_start.quick_start import load_config, run_recbole_gtc
from recbole_gtc.trainer.run import Run, config_items, dataset_digest, fingerprint
from recbole_gtc.trainer.trainer import MMTrainer
from recbole_gtc.utils.errors import RecboleGTCError

BUDGET = {"epochs": 3, "stopping_step": 100, "learning_rate": 0.01, "state": "WARNING", "graph_cache_dir": None,
          "use_gpu": False}


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine with two GPUs as far as the configuration can tell: CUDA available, as many
    devices as ``CUDA_VISIBLE_DEVICES`` names (two when unset), no process group really made."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count",
                        lambda: len(os.environ.get("CUDA_VISIBLE_DEVICES", "0,1").split(",")))
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    groups = []
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda **kwargs: groups.append(kwargs))
    monkeypatch.setattr(torch.distributed, "TCPStore", lambda *args, **kwargs: ("store", args, kwargs))
    return groups


def _config(config_dict=None, cmd=(), distributed=None):
    return MMConfig("BPR", "synth-mm", config_dict=config_dict or {}, cmd_args=list(cmd), distributed=distributed)


# ------------------------------------------------------------------ (2) and (3): which device
def test_use_gpu_false_trains_on_the_cpu_and_leaves_cuda_visible_devices(two_gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # a scheduler's choice
    config = _config({"use_gpu": False})
    assert config["device"] == torch.device("cpu") and config["use_gpu"] is False
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"


def test_gpu_id_sets_cuda_visible_devices_only_when_given(two_gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert _config()["device"].type == "cuda"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"  # RecBole wrote its default gpu_id '0' here
    assert _config(cmd=["--gpu_id=1"])["device"].type == "cuda"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert _config(cmd=["--gpu_id="])["device"] == torch.device("cpu")  # RecBole's rule: no id, no GPU


def test_two_processes_on_two_gpus_need_no_gpu_id(two_gpus):
    settings = {"world_size": 2, "nproc": 2, "offset": 0, "ip": "localhost", "port": 1234}
    config = _config(distributed=dict(settings, local_rank=1))
    assert config["device"] == torch.device("cuda", 1) and not config["single_spec"]
    assert two_gpus[-1]["backend"] == "nccl" and two_gpus[-1]["rank"] == 1
    _, (ip, port, world_size, is_master), options = two_gpus[-1]["store"]  # rank 1 joins rank 0's store
    assert (ip, port, world_size, is_master) == ("localhost", 1234, 2, False)
    assert options["timeout"].total_seconds() == 600  # the default --peer_timeout, settings without one
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    with pytest.raises(RecboleGTCError, match=r"--nproc=2: only 1 GPU\(s\) visible \(gpu_id='0'\)"):
        _config(cmd=["--gpu_id=0"], distributed=dict(settings, local_rank=1))
    cpu = _config({"use_gpu": False}, distributed=dict(settings, local_rank=1))
    assert cpu["device"] == torch.device("cpu") and two_gpus[-1]["backend"] == "gloo"


# ------------------------------------------------------------------ (1): resume
def test_resume_loads_the_random_states_on_the_cpu_whatever_the_device(tmp_path, tiny, monkeypatch):
    """On CUDA the saved random states landed on the GPU (map_location=device), where
    torch.set_rng_state and .numpy() refuse them. A trainer on another device (``meta``
    here) must resume to the uninterrupted run's numbers."""
    original_resume = MMTrainer.resume

    def resume_elsewhere(self, path):
        device, self.device = self.device, torch.device("meta")  # the trainer's device is not the CPU
        try:
            original_resume(self, path)
        finally:
            self.device = device

    _check_resume(tmp_path, tiny, monkeypatch, "BPR", dict(BUDGET, data_path=tiny),
                  lambda: monkeypatch.setattr(MMTrainer, "resume", resume_elsewhere))


def _check_resume(tmp_path, tiny, monkeypatch, model, overrides, before_resume=None):
    """A run killed during its test resumes to the uninterrupted run's test metrics."""
    whole = run_recbole_gtc(model, "tiny", config_dict=dict(overrides, checkpoint_dir=str(tmp_path / "whole")))
    original_evaluate = MMTrainer.evaluate

    def killed_during_test(self, eval_data, load_best_model=True, **kwargs):
        if load_best_model:
            raise KeyboardInterrupt  # killed after training: last.pth stays
        return original_evaluate(self, eval_data, load_best_model=load_best_model, **kwargs)

    monkeypatch.setattr(MMTrainer, "evaluate", killed_during_test)
    overrides = dict(overrides, checkpoint_dir=str(tmp_path / "k"))
    with pytest.raises(KeyboardInterrupt):
        run_recbole_gtc(model, "tiny", config_dict=overrides)
    monkeypatch.setattr(MMTrainer, "evaluate", original_evaluate)
    if before_resume is not None:
        before_resume()
    resumed = run_recbole_gtc(model, "tiny", config_dict=overrides, resume=True)
    assert resumed["test_result"] == whole["test_result"]
    return whole


# ------------------------------------------------------------------ (6): the fingerprint
def test_the_fingerprint_holds_the_device_type_and_cpu_fingerprints_are_unchanged(tmp_path):
    config = _config({"use_gpu": False, "checkpoint_dir": str(tmp_path)})
    cpu = fingerprint(config)
    import recbole

    from recbole_gtc import __version__

    earlier = {"config": config_items(config), "dataset": dataset_digest(config["data_path"]),
               "versions": [__version__, recbole.__version__, torch.__version__]}
    assert cpu == hashlib.sha1(json.dumps(earlier, sort_keys=True).encode()).hexdigest()  # caches stay valid
    config["device"] = torch.device("cuda")
    assert fingerprint(config) != cpu
    config["device"] = torch.device("cuda", 1)
    gpu = fingerprint(config)
    config["device"] = torch.device("cuda", 0)
    assert fingerprint(config) == gpu  # which GPU does not change the numbers


def test_resume_refuses_a_run_of_the_other_device(tmp_path):
    config = _config({"use_gpu": False, "checkpoint_dir": str(tmp_path)})
    run = Run.start(config)
    open(run.resume_checkpoint, "wb").close()
    with open(os.path.join(run.dir, "run.json")) as handle:
        assert json.load(handle)["device"] == "cpu"
    config["device"] = torch.device("cuda")
    with pytest.raises(RecboleGTCError, match="cannot resume: it was trained on cpu, this run is on cuda"):
        Run.start(config, resume=run.dir)
    with pytest.raises(RecboleGTCError, match="no interrupted run of this configuration"):
        Run.start(config, resume=True)


# ------------------------------------------------------------------ (7): loss scaling and clipping
def _sgd_trainer(tiny, tmp_path, scaled, device="cpu"):
    """``(trainer, train_data, initial weights)``: BPR with SGD and gradient clipping on ``device``
    (cpu or cuda); ``scaled``: with fp16's loss scaling."""
    from recbole_gtc.data import create_dataset, data_preparation
    from recbole_gtc.trainer.trainer import _tensorboard_under
    from recbole_gtc.utils.utils import get_model

    config = load_config("BPR", "tiny", config_dict=dict(
        BUDGET, data_path=tiny, checkpoint_dir=str(tmp_path), learner="sgd", learning_rate=0.5,
        clip_grad_norm={"max_norm": 0.01}, use_gpu=device == "cuda"))
    init_seed(0, True)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    init_seed(0, True)
    model = get_model("BPR")(config, train_data.dataset).to(config["device"])
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    with _tensorboard_under(str(tmp_path / "tb")):
        trainer = MMTrainer(config, model)
    if scaled:
        trainer.enable_scaler = True
        trainer.scaler = torch.amp.GradScaler(device)
    return trainer, train_data, initial


def test_gradients_are_unscaled_before_they_are_clipped(tiny, tmp_path, monkeypatch):
    """RecBole clips the scaled gradients: with loss scaling every clipped update was 65,536x
    too small. Scaling by a power of two and unscaling is exact, so the clipped SGD steps of a
    scaled run must equal an unscaled run's."""
    cpu_scaler = lambda enabled=True, **kwargs: torch.amp.GradScaler("cpu", enabled=enabled, **kwargs)  # noqa: E731
    monkeypatch.setattr(torch.cuda.amp, "GradScaler", cpu_scaler)  # RecBole's own scaler, on the CPU
    _check_unscaled_clipping(tiny, tmp_path, "cpu")


def _check_unscaled_clipping(tiny, tmp_path, device):
    trained = {}
    for scaled in (False, True):
        trainer, train_data, initial = _sgd_trainer(tiny, tmp_path / str(scaled), scaled, device)
        init_seed(1, True)  # the same batches and negatives
        trainer._train_epoch(train_data, 0)
        trained[scaled] = trainer.model.state_dict()
    assert trainer.scaler.get_scale() == 65536.0  # the loss really was scaled (no step overflowed)
    for name, weights in trained[False].items():
        assert (weights - initial[name]).abs().max() > 1e-4, name  # the clipped steps are steps
        torch.testing.assert_close(trained[True][name], weights, rtol=1e-6, atol=1e-7, msg=name)


def test_one_loss_scaler_for_the_whole_run_and_its_state_resumes(tiny, tmp_path):
    """RecBole made a new GradScaler every epoch (its scale found again from 65,536 each time)."""
    import types

    trainer, train_data, _ = _sgd_trainer(tiny, tmp_path / "a", scaled=True)
    trainer._train_epoch(train_data, 0)
    steps = trainer.scaler.state_dict()["_growth_tracker"]
    assert steps == len(train_data)  # one count per step without overflow
    trainer._train_epoch(train_data, 1)
    assert trainer.scaler.state_dict()["_growth_tracker"] == 2 * steps

    trainer.run = types.SimpleNamespace(fingerprint="f", resume_checkpoint=str(tmp_path / "last.pth"))
    trainer.train_loss_dict = {0: 1.0, 1: 1.0}
    trainer._save_resume_state(1)
    again, _, _ = _sgd_trainer(tiny, tmp_path / "b", scaled=True)
    again.run = trainer.run
    again.resume(trainer.run.resume_checkpoint)
    assert again.scaler.state_dict() == trainer.scaler.state_dict() and again.start_epoch == 2


# ------------------------------------------------------------------ (5) and (8): precision checks
@pytest.mark.parametrize("model", ["DRAGON", "FREEDOM", "LGMRec", "LightGCN"])
def test_mixed_precision_for_a_model_that_cannot_take_it_is_one_error_line(model, tmp_path, capsys):
    code = cli.main([f"--model={model}", "--dataset=synth-mm", "--mixed_precision=bf16", "--epochs=1",
                     "--use_gpu=False", f"--checkpoint_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: mixed_precision=bf16: {model} does not train in mixed precision")
    assert "models that do: GTC, VBPR, BPR" in err
    assert not os.listdir(tmp_path)  # refused before a run folder exists


def test_fp16_without_cuda_is_one_error_line_before_a_run_starts(tmp_path, capsys):
    code = cli.main(["--model=GTC", "--dataset=synth-mm", "--mixed_precision=fp16", "--use_gpu=False",
                     f"--checkpoint_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and err == "error: mixed_precision=fp16 needs a CUDA device; use bf16 on CPU\n"
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("flag, message", [
    ("--enable_amp=True", "error: enable_amp=True: RecBole's autocast switch"),
    ("--enable_scaler=True", "error: enable_scaler=True: RecBole's loss-scaling switch"),
], ids=["enable_amp", "enable_scaler"])
def test_recboles_amp_switches_are_refused_for_mixed_precision(flag, message, tmp_path, capsys):
    code = cli.main(["--model=BPR", "--dataset=synth-mm", flag, "--epochs=1", "--use_gpu=False",
                     f"--checkpoint_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith(message) and "mixed_precision" in err, err


# ------------------------------------------------------------------ likely defects
def test_deterministic_mode_sets_cublas_workspace_on_cuda_runs_only(monkeypatch):
    from recbole_gtc.quick_start.quick_start import CUBLAS_WORKSPACE, use_deterministic_kernels

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled()
    try:
        use_deterministic_kernels({"reproducibility": True, "device": torch.device("cpu")})
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
        use_deterministic_kernels({"reproducibility": False, "device": torch.device("cuda")})
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ and not torch.are_deterministic_algorithms_enabled()
        use_deterministic_kernels({"reproducibility": True, "device": torch.device("cuda", 1)})
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE == ":4096:8"
        assert torch.are_deterministic_algorithms_enabled()
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's own choice stays
        use_deterministic_kernels({"reproducibility": True, "device": torch.device("cuda")})
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    finally:
        torch.use_deterministic_algorithms(before, warn_only=True)


def test_importing_the_package_and_a_cpu_configuration_set_no_cuda_environment(tmp_path):
    from recbole_gtc.utils.utils import REPO_ROOT

    keys = ("CUBLAS_WORKSPACE_CONFIG", "CUDA_VISIBLE_DEVICES")
    env = {k: v for k, v in os.environ.items() if k not in keys}
    env["PYTHONPATH"] = REPO_ROOT
    code = ("import os, recbole_gtc.cli, recbole_gtc.quick_start.quick_start as q; "
            f"c = q.load_config('BPR', 'synth-mm', cmd_args=['--use_gpu=False', '--checkpoint_dir={tmp_path}']); "
            "q.use_deterministic_kernels(c); "
            f"print([k for k in {keys!r} if k in os.environ])")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "[]", out.stderr[-2000:]


def test_bf16_on_a_gpu_before_ampere_warns(monkeypatch):
    from recbole_gtc.trainer.trainer import _amp_warning

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    message = _amp_warning(torch.bfloat16, torch.device("cuda"))
    assert "Tesla V100-SXM2-16GB (compute capability 7.0, before Ampere) is emulated" in message
    assert _amp_warning(torch.float16, torch.device("cuda")) is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert _amp_warning(torch.bfloat16, torch.device("cuda")) is None


# ------------------------------------------------------------------ on a GPU (skipped without CUDA)
GPU = dict(BUDGET, use_gpu=True)


def _finite(result):
    return all(torch.isfinite(torch.tensor(float(v))) for v in result["test_result"].values())


@pytest.mark.gpu
@pytest.mark.parametrize("model, precision", [
    ("GTC", "none"), ("GTC", "bf16"), ("GTC", "fp16"), ("GTC-sampled", "fp16"), ("VBPR", "none"), ("VBPR", "bf16"),
    ("VBPR", "fp16"), ("BPR", "fp16"), ("DRAGON", "none"), ("FREEDOM", "none"), ("LGMRec", "none"),
    ("LightGCN", "none"),
])
def test_every_model_and_precision_trains_on_cuda(tiny, tmp_path, model, precision):
    name, _, scope = model.partition("-")
    overrides = dict(GPU, data_path=tiny, checkpoint_dir=str(tmp_path), mixed_precision=precision)
    if scope:
        overrides["tc_scope"] = scope
    result = run_recbole_gtc(name, "tiny", config_dict=overrides)
    with open(os.path.join(result["run_dir"], "run.json")) as handle:
        assert json.load(handle)["device"] == "cuda"
    assert _finite(result) and result["test_result"]["recall@20"] > 0


@pytest.mark.gpu
def test_gradients_are_unscaled_before_they_are_clipped_on_cuda(tiny, tmp_path):
    _check_unscaled_clipping(tiny, tmp_path, "cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["BPR", "GTC"])
def test_resume_on_cuda(tmp_path, tiny, monkeypatch, model):
    _check_resume(tmp_path, tiny, monkeypatch, model, dict(GPU, data_path=tiny))


@pytest.mark.gpu
def test_same_seed_same_numbers_on_cuda(tiny, tmp_path):
    """Deterministic mode on CUDA (CUBLAS_WORKSPACE_CONFIG set by the run)."""
    from recbole_gtc.quick_start.quick_start import CUBLAS_WORKSPACE

    first, second = (run_recbole_gtc("GTC", "tiny", config_dict=dict(GPU, data_path=tiny,
                                                                     checkpoint_dir=str(tmp_path / str(i))))
                     for i in range(2))
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == CUBLAS_WORKSPACE
    assert first["test_result"] == second["test_result"]


@pytest.mark.gpu
def test_a_gpu_checkpoint_gives_the_same_top_k_on_the_gpu_and_on_the_cpu(tiny, tmp_path, monkeypatch):
    from recbole_gtc.quick_start.recommend import recommend

    result = run_recbole_gtc("GTC", "tiny", config_dict=dict(GPU, data_path=tiny, checkpoint_dir=str(tmp_path)))
    users = [str(u) for u in result["users"][:20]]
    on_gpu, _ = recommend(result["run_dir"], users, topk=10)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # scored on a machine without a GPU
    on_cpu, _ = recommend(result["run_dir"], users, topk=10)
    assert [row[:2] for row in on_gpu] == [row[:2] for row in on_cpu]  # users and ranks
    for (_, _, item_gpu, score_gpu), (_, _, item_cpu, score_cpu) in zip(on_gpu, on_cpu):
        # The same item at every rank, but for two near-equal scores that the devices' rounding
        # (about 1e-6 relative) may order either way.
        assert abs(score_gpu - score_cpu) <= 1e-4 * max(1.0, abs(score_gpu))
        assert item_gpu == item_cpu or abs(score_gpu - score_cpu) <= 1e-5 * max(1.0, abs(score_gpu))


@pytest.mark.gpu
def test_two_processes_on_two_gpus(tiny, tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    import socket

    from recbole_gtc.quick_start.distributed import distributed_settings, run_distributed

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    args = [f"--{k}={v}" for k, v in dict(GPU, data_path=tiny, checkpoint_dir=str(tmp_path)).items()]
    result = run_distributed("GTC", "tiny", distributed_settings(nproc=2, port=port), cmd_args=args)
    assert result["world_size"] == 2 and _finite(result)
