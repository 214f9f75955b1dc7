"""RecBole's trainers plus what a benchmarking run needs: its own files, crash-safe
checkpoints, resume, and a per-epoch hook for the model."""

import contextlib
import random
import time
import warnings

import numpy as np
import recbole.trainer.trainer as recbole_trainer
import torch
import torch.distributed as dist
from recbole.trainer import Trainer
from recbole.utils import ModelType
from recbole.utils import get_trainer as recbole_get_trainer
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter

from recbole_gtc.evaluator.per_user import PerUserRecorder
from recbole_gtc.trainer.run import atomic_save
from recbole_gtc.utils.errors import RecboleGTCError
from recbole_gtc.utils.files import to_plain
from recbole_gtc.utils.utils import _PLUGIN_MODELS

RESUME_FORMAT = 1


class RunTrainerMixin(PerUserRecorder):
    """Mixed into any RecBole trainer by :func:`build_trainer`.

    * The best checkpoint goes to the run's own ``best.pth`` (RecBole names it by model
      and second, so concurrent runs overwrote and loaded each other's), written
      atomically, and TensorBoard events go under the run folder.
    * After every evaluated epoch the full training state is written atomically to
      ``last.pth``: model, optimizer, early-stopping state, the per-epoch timings and
      every random state (Python, NumPy, torch, CUDA, the training dataloader's
      shuffling generator). :meth:`resume` restores it, so a killed run continues
      and ends with exactly the metrics of an uninterrupted one on CPU.
    * The last evaluation's per-user metric values are kept (:class:`PerUserRecorder`),
      for the per-user significance tests of a comparison study.
    """

    run = None
    train_data = None

    def attach(self, run, train_data=None):
        self.run = run
        self.train_data = train_data
        self.saved_model_file = run.best_checkpoint
        if not hasattr(self, "epoch_seconds"):
            self.epoch_seconds = []
        self._record_eval_users()

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "config": self.config,
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": self.best_valid_score,
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }
        atomic_save(state, saved_model_file, pickle_protocol=4)
        if verbose:
            self.logger.info(f"Saving current: {saved_model_file}")

    training_finished = False

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self.train_data = train_data
        if self.training_finished:
            # Killed after early stopping (e.g. during the test): training is complete and
            # best.pth holds the best epoch; training on would change the run's result.
            return self.best_valid_score, self.best_valid_result

        def on_evaluated(epoch_idx, valid_score):
            if not self.config["single_spec"]:
                _same_on_every_rank(valid_score, epoch_idx)
            self._record_diagnostics(epoch_idx)
            if self.run is not None:
                self._save_resume_state(epoch_idx)
            if callback_fn is not None:
                callback_fn(epoch_idx, valid_score)

        return super().fit(train_data, valid_data, verbose=verbose, saved=saved,
                           show_progress=show_progress, callback_fn=on_evaluated)

    epoch_diagnostics = None

    def _record_diagnostics(self, epoch_idx):
        """With ``diagnostics: True``: the model's ``diagnostics()`` after the epoch's validation
        (the model still in eval mode, its evaluation representations still cached, so they are
        not computed again), with the seconds they took, into :attr:`epoch_diagnostics` and the log."""
        model = getattr(self.model, "module", self.model)  # DistributedDataParallel wraps the model
        diagnose = getattr(model, "diagnostics", None)
        if self.epoch_diagnostics is None or not callable(diagnose):
            return
        start = time.perf_counter()
        values = diagnose()
        entry = {"epoch": int(epoch_idx), **{k: float(v) for k, v in values.items()},
                 "seconds": time.perf_counter() - start}
        self.epoch_diagnostics.append(entry)
        self.logger.info("diagnostics " + " ".join(f"{k}={v:.4g}" for k, v in entry.items() if k != "epoch"))

    def _save_resume_state(self, epoch_idx):
        if not self.config["single_spec"]:
            return  # a multi-process run is not resumable (the runner refuses --resume with --nproc)
        generator = getattr(self.train_data, "generator", None)
        state = {
            "format": RESUME_FORMAT,
            "fingerprint": self.run.fingerprint,
            "epoch": epoch_idx,
            # RecBole's early stopping ends training once cur_step exceeds stopping_step.
            "finished": bool(self.cur_step > self.stopping_step or epoch_idx + 1 >= self.epochs),
            "cur_step": int(self.cur_step),
            "best_valid_score": float(self.best_valid_score),
            # plain floats: RecBole's metrics are NumPy scalars, which weights_only loading refuses
            "best_valid_result": {k: float(v) for k, v in (self.best_valid_result or {}).items()},
            "train_loss_dict": {int(k): to_plain(v) for k, v in self.train_loss_dict.items()},
            "epoch_seconds": [float(x) for x in getattr(self, "epoch_seconds", [])],
            "epoch_diagnostics": to_plain(getattr(self, "epoch_diagnostics", None)),
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": _rng_state(generator),
        }
        atomic_save(state, self.run.resume_checkpoint)

    def resume(self, path):
        """Continue from ``last.pth``: the next epoch is the one after the saved one."""
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # a damaged file: refuse clearly, never train from half a state
            raise RecboleGTCError(f"{path}: unreadable checkpoint ({str(exc).splitlines()[0][:120]})") from None
        if state.get("format") != RESUME_FORMAT or state.get("fingerprint") != self.run.fingerprint:
            raise RecboleGTCError(f"{path}: checkpoint of another configuration; cannot resume from it")
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch = state["epoch"] + 1
        self.training_finished = bool(state["finished"])
        self.cur_step = state["cur_step"]
        self.best_valid_score = state["best_valid_score"]
        self.best_valid_result = state["best_valid_result"] or None
        self.train_loss_dict = dict(state["train_loss_dict"])
        self.epoch_seconds = list(state["epoch_seconds"])
        if state.get("epoch_diagnostics") is not None and getattr(self, "epoch_diagnostics", None) is not None:
            self.epoch_diagnostics = list(state["epoch_diagnostics"])
        _set_rng_state(state["rng"], getattr(self.train_data, "generator", None))
        self.logger.info(f"Resumed {path}: training continues at epoch {self.start_epoch}")


class MMTrainer(RunTrainerMixin, Trainer):
    """:class:`recbole.trainer.Trainer` that calls ``model.on_epoch_start(epoch_idx)``
    (when the model defines it) before each training epoch.

    GTC needs it to re-draw the padding of its user-user graph once per epoch;
    RecBole's trainer has no such hook. It also records each training epoch's
    wall-clock seconds in ``epoch_seconds`` (for side-by-side cost comparisons).
    Everything else is RecBole's trainer, so baselines trained with it behave
    exactly as under RecBole.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.epoch_seconds = []
        self.epoch_diagnostics = [] if config["diagnostics"] else None
        self.amp_dtype = _amp_dtype(config["mixed_precision"], self.device.type)
        if self.amp_dtype is not None:
            # RecBole's _train_epoch already wraps the loss in torch.autocast(enabled=enable_amp)
            # and steps through a GradScaler(enabled=enable_scaler); only the dtype is ours.
            self.enable_amp = True
            self.enable_scaler = self.amp_dtype == torch.float16  # fp16 needs loss scaling (CUDA only)
            if self.device.type == "cpu" and torch.backends.cpu.get_cpu_capability() != "AVX512":
                # Without AVX-512 kernels (an AVX2 CPU, or the AVX2 pin) bf16 is emulated: several times slower.
                self.logger.warning("mixed_precision on CPU without AVX-512 kernels is slow; use an AVX-512 BF16 "
                                    "CPU without RECBOLE_GTC_CPU_KERNELS=avx2")

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = time.perf_counter()
        hook = getattr(self.model, "on_epoch_start", None)
        if callable(hook):
            hook(epoch_idx)
        with _autocast_dtype(self.device.type, self.amp_dtype):
            loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.epoch_seconds.append(time.perf_counter() - start)
        return loss


def _same_on_every_rank(valid_score, epoch_idx):
    """Every rank of a multi-process run evaluates every user with identical weights, so the
    validation scores, and with them early stopping, must agree; a rank that stopped alone
    would leave the others waiting in the next gradient exchange."""

    scores = [None] * dist.get_world_size()
    dist.all_gather_object(scores, float(valid_score))
    if len(set(scores)) != 1:
        raise RecboleGTCError(f"epoch {epoch_idx}: the ranks' validation scores differ ({scores})")


_AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _amp_dtype(mode, device_type):
    """``mixed_precision`` (none | bf16 | fp16) -> the autocast dtype for training, or None."""
    key = "none" if mode is None else str(mode).lower()
    if key not in _AMP_DTYPES:
        raise RecboleGTCError(f"mixed_precision={mode!r}: must be none, bf16 or fp16")
    if key == "fp16" and device_type != "cuda":
        # RecBole's GradScaler is CUDA-only; fp16 without loss scaling underflows gradients.
        raise RecboleGTCError("mixed_precision=fp16 needs a CUDA device; use bf16 on CPU")
    return _AMP_DTYPES[key]


@contextlib.contextmanager
def _autocast_dtype(device_type, dtype):
    # RecBole's torch.autocast(device_type, enabled=...) takes its dtype from this
    # per-device default; set it for the epoch and restore it afterwards.
    if dtype is None:
        yield
        return
    previous = torch.get_autocast_dtype(device_type)
    torch.set_autocast_dtype(device_type, dtype)
    try:
        yield
    finally:
        torch.set_autocast_dtype(device_type, previous)


def build_trainer(trainer_class, config, model, run, train_data=None):
    """``trainer_class`` (RecBole's choice or :class:`MMTrainer`) bound to ``run``'s files.

    RecBole's own trainers (e.g. ``TraditionalTrainer`` for ItemKNN) get
    :class:`RunTrainerMixin` mixed in, so every model's checkpoint is its run's own.
    """
    if not issubclass(trainer_class, RunTrainerMixin):
        trainer_class = type(trainer_class.__name__, (RunTrainerMixin, trainer_class), {})
    with _tensorboard_under(run.tensorboard_dir), _ddp_for(config):
        trainer = trainer_class(config, model)
    trainer.attach(run, train_data)
    return trainer


@contextlib.contextmanager
def _ddp_for(config):
    """RecBole's trainer wraps the model in ``DistributedDataParallel(model, device_ids=[local_rank])``
    in a multi-process run, which PyTorch refuses for a CPU module. Here CPU modules get no
    ``device_ids``, and buffers are not broadcast: RecBole uses the wrapper only to average
    gradients, every rank builds the same buffers from the same seed (GTC's graphs among
    them: large, some sparse, which DDP cannot broadcast)."""
    if config["single_spec"]:
        yield
        return

    def ddp(module, device_ids=None):
        cpu = config["device"].type == "cpu"
        with warnings.catch_warnings():
            # torch deprecates broadcast_buffers in favour of forward_sync_buffers, which would
            # still sync (sparse, unsyncable) buffers at init; its own advice is to keep it.
            warnings.filterwarnings("ignore", message=r".*broadcast_buffers.*is deprecated.*", category=FutureWarning)
            return DistributedDataParallel(module, device_ids=None if cpu else device_ids, broadcast_buffers=False)

    original = recbole_trainer.DistributedDataParallel
    recbole_trainer.DistributedDataParallel = ddp
    try:
        yield
    finally:
        recbole_trainer.DistributedDataParallel = original


@contextlib.contextmanager
def _tensorboard_under(folder):
    # RecBole's Trainer.__init__ opens a SummaryWriter in ./log_tensorboard/<log file name>;
    # point it at the run's folder instead, so runs never share or pile up event files.

    original = recbole_trainer.get_tensorboard
    recbole_trainer.get_tensorboard = lambda logger: SummaryWriter(folder)
    try:
        yield
    finally:
        recbole_trainer.get_tensorboard = original


def _rng_state(generator=None):
    """Every random state training reads, as tensors and plain values (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def _set_rng_state(state, generator=None):
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"])


def get_trainer(model_type, model_name):
    """RecBole's trainer for the model, except general recommenders get :class:`MMTrainer`
    (RecBole's Trainer plus a per-epoch hook); other model types keep RecBole's choice."""
    if model_type == ModelType.GENERAL:
        if model_name in _PLUGIN_MODELS or recbole_get_trainer(model_type, model_name).__name__ == "Trainer":
            return MMTrainer
    return recbole_get_trainer(model_type, model_name)
