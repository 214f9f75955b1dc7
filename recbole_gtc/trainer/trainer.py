"""RecBole's trainers plus what a benchmarking run needs: its own files, crash-safe
checkpoints, resume, and a per-epoch hook for the model."""

import contextlib
import random
import time
import types
import warnings

import numpy as np
import recbole.trainer.trainer as recbole_trainer
import torch
import torch.distributed as dist
from recbole.trainer import Trainer
from recbole.utils import ModelType
from recbole.utils import get_trainer as recbole_get_trainer
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils.clip_grad import clip_grad_norm_
from torch.utils.tensorboard import SummaryWriter

from recbole_gtc.evaluator.per_user import PerUserRecorder
from recbole_gtc.utils.errors import DivergenceError, RecboleGTCError
from recbole_gtc.utils.files import atomic_save, to_plain
from recbole_gtc.utils.utils import _PLUGIN_MODELS

RESUME_FORMAT = 1
#: Feature magnitudes above this are named first among a divergence's likely causes
#: (pretrained embeddings are O(1); CLIP/BERT features rarely exceed 100).
LARGE_FEATURE = 1e4


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

    # ------------------------------------------------------------------ divergence
    _current_epoch = None

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._current_epoch = epoch_idx
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        name = non_finite_parameter(self.model)
        if name is not None:
            raise DivergenceError(f"epoch {epoch_idx}: training diverged: non-finite weights (NaN or inf, first in "
                                  f"{name}); {self._divergence_causes()}")
        return loss

    def _check_nan(self, loss):
        """RecBole's check raises ``ValueError("Training loss is nan")`` for NaN only; an infinite
        loss trained on and left non-finite weights. Either stops the run with the epoch named."""
        if not torch.isfinite(loss).all():
            value = "nan" if torch.isnan(loss).any() else "inf"
            epoch = "" if self._current_epoch is None else f"epoch {self._current_epoch}: "
            raise DivergenceError(f"{epoch}training diverged: the training loss is {value}; "
                                  f"{self._divergence_causes()}")

    def _divergence_causes(self):
        """The likely causes, in words: the learning rate, and the features' scale when the
        model has modality features (named first when they are large)."""
        causes = [f"a learning rate too high (learning_rate={self.config['learning_rate']}; try a smaller one)"]
        dataset = getattr(self.train_data, "dataset", None)
        feats = getattr(dataset, "modality_feats", None) or {}
        scales = [(float(f.abs().max()), m) for m, f in feats.items() if f.numel()]
        if scales:
            scale, name = max(scales)
            text = (f"features at too large a scale (largest |value| {scale:.3g}, modality {name}; "
                    f"standardise the feature files)")
            causes.insert(0 if scale > LARGE_FEATURE else 1, text)
        return f"likely cause: {' or '.join(causes)}; no checkpoint with non-finite weights is kept"

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        _refuse_non_finite(self.model, epoch)
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

        with _early_stopping_rule(self.config["best_on_tie"]):
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
        _refuse_non_finite(self.model, epoch_idx)
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
        scaler = getattr(self, "scaler", None)
        if scaler is not None and scaler.is_enabled():
            state["scaler"] = scaler.state_dict()  # fp16's loss scale: plain numbers
        atomic_save(state, self.run.resume_checkpoint)
        self.run.saved_epoch = epoch_idx

    def resume(self, path):
        """Continue from ``last.pth``: the next epoch is the one after the saved one."""
        try:
            # On the CPU whatever the run's device: the random states must stay CPU tensors
            # (torch.set_rng_state and .numpy() refuse CUDA ones); load_state_dict copies the
            # weights and the optimizer's state onto the parameters' device.
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged file: refuse clearly, never train from half a state
            raise RecboleGTCError(f"{path}: unreadable checkpoint ({str(exc).splitlines()[0][:120]})") from None
        if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT \
                or state.get("fingerprint") != self.run.fingerprint:
            raise RecboleGTCError(f"{path}: checkpoint of another configuration; cannot resume from it")
        name = non_finite_tensor(state["state_dict"].items())
        if name is not None:  # never continue from a diverged state (this version never writes one)
            raise RecboleGTCError(f"{path}: holds non-finite weights (NaN or inf in {name}); cannot resume from it")
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch = state["epoch"] + 1
        self.training_finished = bool(state["finished"])
        self.cur_step = state["cur_step"]
        self.best_valid_score = state["best_valid_score"]
        self.best_valid_result = state["best_valid_result"] or None
        self.train_loss_dict = dict(state["train_loss_dict"])
        self.epoch_seconds = list(state["epoch_seconds"])
        scaler = getattr(self, "scaler", None)
        if scaler is not None and scaler.is_enabled() and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if state.get("epoch_diagnostics") is not None and getattr(self, "epoch_diagnostics", None) is not None:
            self.epoch_diagnostics = list(state["epoch_diagnostics"])
        _set_rng_state(state["rng"], getattr(self.train_data, "generator", None))
        self.run.saved_epoch = state["epoch"]
        self.logger.info(f"Resumed {path}: training continues at epoch {self.start_epoch}")


class MMTrainer(RunTrainerMixin, Trainer):
    """:class:`recbole.trainer.Trainer` that calls ``model.on_epoch_start(epoch_idx)``
    (when the model defines it) before each training epoch.

    GTC needs it to re-draw the padding of its user-user graph once per epoch;
    RecBole's trainer has no such hook. It also records each training epoch's
    wall-clock seconds in ``epoch_seconds`` (for side-by-side cost comparisons), and
    trains in ``mixed_precision`` (:func:`_amp_dtype`). Everything else is RecBole's
    trainer, so baselines trained with it behave exactly as under RecBole.

    Loss scaling (fp16): RecBole 1.2.1 makes a new ``torch.cuda.amp.GradScaler`` every epoch
    (its scale found again from 65,536 each time) and clips the *scaled* gradients, so with
    ``clip_grad_norm`` every update was about the scale factor too small. Here the trainer keeps
    one scaler (``scaler``; saved with ``--resume``'s state) and the gradients are unscaled
    before they are clipped (:func:`_scaled_steps`).
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.epoch_seconds = []
        self.epoch_diagnostics = [] if config["diagnostics"] else None
        self.amp_dtype = _amp_dtype(config["mixed_precision"], self.device.type)
        # RecBole's _train_epoch wraps the loss in torch.autocast(enabled=enable_amp) and steps
        # through a GradScaler(enabled=enable_scaler); the dtype and the scaler are ours.
        self.enable_amp = self.amp_dtype is not None
        self.enable_scaler = self.amp_dtype == torch.float16  # fp16 needs loss scaling
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.enable_scaler)
        message = _amp_warning(self.amp_dtype, self.device)
        if message:
            self.logger.warning(message)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = time.perf_counter()
        hook = getattr(self.model, "on_epoch_start", None)
        if callable(hook):
            hook(epoch_idx)
        with _autocast_dtype(self.device.type, self.amp_dtype), _scaled_steps(self):
            loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the epoch's last kernels are part of its time
        self.epoch_seconds.append(time.perf_counter() - start)
        return loss


def non_finite_tensor(named_tensors):
    """The name of the first dense floating-point tensor of ``(name, tensor)`` pairs holding NaN
    or inf, or ``None`` (sparse tensors, e.g. graphs built from the data, are not looked at)."""
    for name, tensor in named_tensors:
        if torch.is_tensor(tensor) and tensor.layout == torch.strided and tensor.is_floating_point():
            if not bool(torch.isfinite(tensor).all()):
                return name
    return None


def non_finite_parameter(model):
    """The name of the first parameter of ``model`` holding NaN or inf, or ``None``."""
    with torch.no_grad():
        return non_finite_tensor(model.named_parameters())


def _refuse_non_finite(model, epoch):
    name = non_finite_parameter(model)
    if name is not None:
        raise DivergenceError(f"epoch {epoch}: training diverged: non-finite weights (NaN or inf, first in {name}); "
                              f"not saved")


@contextlib.contextmanager
def _in_recbole_trainer(**replacements):
    """Replace names of RecBole's trainer module (``recbole.trainer.trainer``) while the block
    runs, then put the originals back: the one way this package changes what RecBole's ``fit``,
    ``_train_epoch`` and ``__init__`` call without copying them."""
    originals = {name: getattr(recbole_trainer, name) for name in replacements}
    for name, value in replacements.items():
        setattr(recbole_trainer, name, value)
    try:
        yield
    finally:
        for name, value in originals.items():
            setattr(recbole_trainer, name, value)


@contextlib.contextmanager
def _scaled_steps(trainer):
    """For RecBole's ``_train_epoch``: ``trainer.scaler`` as its GradScaler (one for the whole
    run, on the trainer's device type), and gradients unscaled before ``clip_grad_norm_``
    (``GradScaler.unscale_``, as torch's AMP recipe does; a no-op when loss scaling is off)."""
    scaler = trainer.scaler

    def clip(parameters, *args, **kwargs):
        scaler.unscale_(trainer.optimizer)
        return clip_grad_norm_(parameters, *args, **kwargs)

    with _in_recbole_trainer(amp=types.SimpleNamespace(GradScaler=lambda *args, **kwargs: scaler),
                             clip_grad_norm_=clip):
        yield


def strict_early_stopping(value, best, cur_step, max_step, bigger=True):
    """RecBole's ``early_stopping`` with MMRec's rule for ties: only a strictly better score is
    an improvement, so a tie keeps the earlier best epoch and counts toward stopping.

    Returns:
        (best, cur_step, stop_flag, update_flag), as RecBole's.
    """
    if value > best if bigger else value < best:
        return value, 0, False, True
    cur_step += 1
    return best, cur_step, cur_step > max_step, False


@contextlib.contextmanager
def _early_stopping_rule(best_on_tie):
    """RecBole's ``fit`` with ``best_on_tie: earlier`` (MMRec's rule, :func:`strict_early_stopping`)
    or ``later`` (RecBole's own, unchanged). Rounded validation metrics tie often where a model
    barely learns (sparse data), and there the two rules select different epochs."""
    if best_on_tie != "earlier":
        yield
        return
    with _in_recbole_trainer(early_stopping=strict_early_stopping):
        yield


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
        # fp16 autocast on a CPU is emulated on almost every CPU (slower than float32).
        raise RecboleGTCError("mixed_precision=fp16 needs a CUDA device; use bf16 on CPU")
    return _AMP_DTYPES[key]


def _amp_warning(dtype, device):
    """A warning for mixed precision where it runs emulated (slower than float32), or None."""
    if dtype != torch.bfloat16:
        return None
    if device.type == "cpu" and torch.backends.cpu.get_cpu_capability() != "AVX512":
        # Without AVX-512 kernels (an AVX2 CPU, or the AVX2 pin) bf16 is emulated: several times slower.
        return ("mixed_precision on CPU without AVX-512 kernels is slow; use an AVX-512 BF16 "
                "CPU without RECBOLE_GTC_CPU_KERNELS=avx2")
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if major < 8:  # bf16 tensor cores arrived with Ampere (compute capability 8.0)
            return (f"mixed_precision=bf16 on {torch.cuda.get_device_name(device)} (compute capability "
                    f"{major}.{minor}, before Ampere) is emulated and slower than float32; use fp16 or none")
    return None


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

    with _in_recbole_trainer(DistributedDataParallel=ddp):
        yield


@contextlib.contextmanager
def _tensorboard_under(folder):
    # RecBole's Trainer.__init__ opens a SummaryWriter in ./log_tensorboard/<log file name>;
    # point it at the run's folder instead, so runs never share or pile up event files.
    with _in_recbole_trainer(get_tensorboard=lambda logger: SummaryWriter(folder)):
        yield


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
