"""One training run's identity and files.

Every run (one model on one dataset with one seed; each model x seed of a comparison;
each tuning trial) owns a folder ``<checkpoint_dir>/<run_id>/``, with ``run_id`` =
``<model>-<dataset>-<YYYYmmdd-HHMMSS>-<pid>-<random>``, unique even for runs started
in the same second in the same folder. The folder holds:

* ``run.json``: model, dataset, the device type (``device``: ``cpu`` or ``cuda``), the
  configuration (``config``: every key that decides the run's numbers, as JSON values), its
  fingerprint, ``dataset_digest`` (of the dataset files alone: ``--recommend`` checks it), the
  state (``running | finished | failed | interrupted``; ``interrupted``: a Ctrl-C or a full
  disk, resumable), ``error`` (why it failed or stopped), the last process id that wrote it
  (information only) and, once trained, ``result``: what
  :func:`recbole.quick_start.run_recbole` returns (``best_valid_score``,
  ``valid_score_bigger``, ``best_valid_result``, ``test_result``; the last two
  metric -> value, ``{}`` for a run that is not tested) plus ``epochs``,
  ``train_seconds_per_epoch`` (the median over the epochs after the first, see
  :func:`recbole_gtc.quick_start.quick_start.seconds_per_epoch`), ``epoch_seconds`` (every
  training epoch's wall-clock seconds, the first included), ``test_groups`` (see
  ``test_groups.csv`` below) and ``diagnostics`` (with ``diagnostics: True``, one dict per
  epoch: the model's ``diagnostics()`` and the seconds they took; else null);
* ``run.log``: the run's log (and ``tensorboard/``, RecBole's event files);
* ``best.pth``: the best-validation checkpoint (RecBole's format), which the test loads;
* ``test_per_user.npz``: each test user's metric values (``users``: tokens, then one
  array per metric, e.g. ``recall@20``), for per-user significance tests;
* ``test_groups.csv``: the test metrics per user group (training activity and test-item
  popularity quintiles, :mod:`recbole_gtc.evaluator.groups`), also under ``result`` as
  ``test_groups``;
* ``last.pth``: the state after the last completed epoch (model, optimizer,
  early-stopping state, every RNG state), for ``--resume``; removed when the run ends;
* ``run.lock``: ``flock``-ed by the process training the run (released by the operating
  system when it ends, however it ends); removed when the run finishes or fails;
* ``run.reserve``: 64 KiB kept while the run trains and freed when it ends, so that on a
  full disk the run can still record why it stopped (``run.json``, ``run.log``).

Every file is written to a temporary name in the same folder, flushed and renamed
(:func:`~recbole_gtc.utils.files.atomic_write`), so a kill or a full disk while saving never leaves
a partial file under the real name, and the previous version stays until the new one is whole.
"""

import hashlib
import json
import logging
import math
import os
import sys
import time

import colorlog
import numpy as np
import recbole
import torch
from colorama import init
from recbole.utils.logger import RemoveColorFilter, log_colors_config

from recbole_gtc import __version__
from recbole_gtc.utils.errors import RecboleGTCError
from recbole_gtc.utils.files import atomic_write, check_output_dir, expand_path, to_plain

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

RUN_FILE = "run.json"
BEST_CHECKPOINT = "best.pth"
RESUME_CHECKPOINT = "last.pth"
LOG_FILE = "run.log"
LOCK_FILE = "run.lock"
RESERVE_FILE = "run.reserve"
#: Bytes a training run keeps in ``run.reserve``: freed when the run ends, so that on a full
#: disk its last ``run.json`` state and ``run.log`` line can still be written.
RESERVE_BYTES = 64 * 1024
PER_USER_FILE = "test_per_user.npz"
GROUPS_FILE = "test_groups.csv"

#: The keys of a run's result stored under ``result`` in ``run.json``: RecBole's
#: ``run_recbole`` return value, then this package's training length and cost.
RESULT_KEYS = ("best_valid_score", "valid_score_bigger", "best_valid_result", "test_result",
               "epochs", "train_seconds_per_epoch", "epoch_seconds", "test_groups", "diagnostics")

#: Keys that never change a run's numbers (where files go, how much is printed, the
#: device string RecBole derives: the fingerprint holds its type, :func:`device_kind`);
#: everything else in the final configuration is part of the fingerprint.
VOLATILE_KEYS = frozenset({
    "checkpoint_dir", "data_path", "show_progress", "state", "log_wandb", "wandb_project",
    "save_dataset", "save_dataloaders", "dataset_save_path", "dataloaders_save_path",
    "graph_cache_dir", "device", "gpu_id", "worker", "config_files",
    # where a multi-process group meets (local_rank stays: it is 0 in every single-process run,
    # so their fingerprints are unchanged; world_size and nproc change how batches are split)
    "offset", "ip", "port",
})


#: Keys left out of the fingerprint (and of run.json's ``config``) while they hold these values:
#: keys added after runs were cached, at the value that computes what those runs computed, so
#: the cached runs (results/) keep their fingerprints. Another value is part of the fingerprint.
OMITTED_AT = {"diagnostics": False, "diffusion_condition": "item", "best_on_tie": "later", "eval_noise": "fixed",
              "drop_leaked": False}


def new_run_id(model, dataset):
    """``<model>-<dataset>-<time>-<pid>-<random>``. The random part comes from the OS, so
    naming a run never consumes the seeded random streams that training uses."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{model}-{dataset}-{stamp}-{os.getpid()}-{os.urandom(3).hex()}"


def dataset_digest(folder):
    """sha1 over the names and bytes of the dataset's files (caches below it excluded)."""
    digest = hashlib.sha1()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def _relevant(config):
    """``(key, value)`` of the result-relevant configuration, sorted by key."""
    return ((key, value) for key, value in sorted(config.final_config_dict.items())
            if key not in VOLATILE_KEYS and not (key in OMITTED_AT and value in (OMITTED_AT[key], None)))


def config_items(config):
    """The result-relevant configuration as ``{key: repr(value)}``, sorted by key: what the
    fingerprint hashes (kept as reprs so that fingerprints, and with them the studies' caches
    of finished runs, stay those of earlier versions)."""
    return {key: repr(value) for key, value in _relevant(config)}


def config_values(config):
    """The result-relevant configuration (the keys of :func:`config_items`) as JSON values."""
    return {key: json_value(value) for key, value in _relevant(config)}


def _json_leaf(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


def json_value(value):
    """``value`` as JSON holds it: :func:`~recbole_gtc.utils.files.to_plain`'s mappings, lists,
    strings, booleans, finite numbers and None as they are; anything else JSON has no type for
    (a ``torch.device``, RecBole's enums, ``nan``) as its ``str``."""
    return to_plain(value, _json_leaf)


def fingerprint(config, data_digest=False):
    """sha1 of the result-relevant configuration, the dataset files, the library versions and,
    for a run on a GPU, the device type (:func:`device_kind`; CPU runs hash as they always did).

    Two runs with the same fingerprint train the same model the same way on the same
    data; ``--resume`` continues only a run with the same fingerprint. ``data_digest``: the
    dataset's :func:`dataset_digest` when the caller has it (default: computed here).
    """

    folder = config["data_path"]  # RecBole's Config has joined the dataset name onto it
    if data_digest is False:  # not computed by the caller
        data_digest = dataset_digest(folder) if os.path.isdir(folder) else None
    payload = {
        "config": config_items(config),
        "dataset": data_digest,
        "versions": [__version__, recbole.__version__, torch.__version__],
    }
    kind = device_kind(config)
    if kind != "cpu":
        # A GPU run's numbers (kernels, seconds per epoch) are not a CPU run's: a study never
        # reuses one for the other and --resume never continues one as the other. CPU runs
        # hash as before, so the caches of finished CPU runs stay valid.
        payload["device"] = kind
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def device_kind(config):
    """The type of the run's device, ``cpu`` or ``cuda`` (its index never changes the numbers)."""
    device = config["device"]
    return torch.device(device).type if device is not None else "cpu"


def save_per_user(path, users, values):
    """Write the test users' tokens and their per-user metric values (``metric -> [n_users]``)
    as one ``.npz`` (``users`` plus one array per metric), atomically."""

    arrays = {"users": np.asarray(users, dtype=str)}
    arrays.update({name: np.asarray(v, dtype=np.float64) for name, v in values.items()})

    def write(tmp):
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)  # ~12x smaller: studies keep one per run

    atomic_write(path, write)


def load_per_user(path):
    """``(users, values)`` as written by :func:`save_per_user`."""

    with np.load(path, allow_pickle=False) as data:
        users = [str(u) for u in data["users"]]
        values = {name: data[name].astype(np.float64) for name in data.files if name != "users"}
    return users, values


def _try_lock(run_dir):
    """The open file descriptor of ``run_dir/run.lock``, locked exclusively, or ``None`` when
    another process (or another Run of this one) holds it.

    ``flock`` locks belong to the open file and are released by the operating system when the
    process dies, however it dies: unlike a process id, a lock can neither outlive its owner
    nor be inherited by an unrelated process that got the same id after a reboot."""
    if fcntl is None:  # no flock (Windows): runs are not protected against a second owner
        return -1
    path = os.path.join(run_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RecboleGTCError(f"{path}: cannot open the run's lock file ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _unlock(fd):
    if fd is not None and fd >= 0:
        try:
            os.close(fd)  # closing the only descriptor of the open file releases the flock
        except OSError:
            pass


def _is_locked(run_dir):
    """Whether another process holds ``run_dir``'s lock now (it is training that run)."""
    fd = _try_lock(run_dir)
    _unlock(fd)
    return fd is None


#: When set (e.g. by a comparison study: "run the same command again"), how a user continues
#: an interrupted run, in the one line a Ctrl-C or a full disk prints; else ``--resume=RUN_DIR``.
RESUME_HINT = None


class Run:
    """A run folder and its state.

    The process that trains a run holds ``run.lock`` in its folder (an ``flock``, released
    by the operating system when the process ends, however it ends); a second process
    cannot resume a run that is being trained.

    Attributes:
        run_id (str): the folder's name.
        dir (str): the folder.
        fingerprint (str): see :func:`fingerprint`.
        resume_file (str or None): the ``last.pth`` to continue from, when resuming.
        saved_epoch (int or None): the epoch ``last.pth`` holds (set by the trainer).
    """

    def __init__(self, run_dir, fingerprint_, meta, resume_file=None, lock=None):
        self.dir = run_dir
        self.run_id = os.path.basename(run_dir)
        self.fingerprint = fingerprint_
        self.meta = meta
        self.resume_file = resume_file
        self.training_started = False
        self.saved_epoch = None
        self._lock = lock

    # ------------------------------------------------------------------ paths
    @property
    def best_checkpoint(self):
        return os.path.join(self.dir, BEST_CHECKPOINT)

    @property
    def resume_checkpoint(self):
        return os.path.join(self.dir, RESUME_CHECKPOINT)

    @property
    def per_user_file(self):
        return os.path.join(self.dir, PER_USER_FILE)

    @property
    def groups_file(self):
        return os.path.join(self.dir, GROUPS_FILE)

    @property
    def log_file(self):
        return os.path.join(self.dir, LOG_FILE)

    @property
    def tensorboard_dir(self):
        return os.path.join(self.dir, "tensorboard")

    # ------------------------------------------------------------------ life cycle
    @classmethod
    def start(cls, config, resume=None, saved=True):
        """Create a new run folder, or reopen the one ``resume`` names.

        Args:
            config (Config): the run's final configuration.
            resume (None, True or str): ``None``: a new run. ``True``: the most recent
                interrupted run with the same fingerprint under ``checkpoint_dir`` that no
                process is training. A path: that run folder (or its ``last.pth``), refused
                unless its fingerprint matches and no other process is training it.
            saved (bool): whether the run keeps a best-validation ``best.pth`` and tests it
                (recorded in ``run.json``; a run of the other kind is never resumed as this one).

        Raises:
            RecboleGTCError: the output folder cannot be used, or nothing fits ``resume``.
        """
        root = check_output_dir(config["checkpoint_dir"], "checkpoint_dir")
        folder = config["data_path"]
        data_digest = dataset_digest(folder) if os.path.isdir(folder) else None
        digest = fingerprint(config, data_digest)
        if resume is None or resume is False:
            run_dir = os.path.join(root, new_run_id(config["model"], config["dataset"]))
            check_output_dir(run_dir, "checkpoint_dir")
            meta = {"model": config["model"], "dataset": config["dataset"], "device": device_kind(config),
                    "fingerprint": digest, "dataset_digest": data_digest, "saved": bool(saved),
                    "config": config_values(config)}
            run = cls(run_dir, digest, meta, lock=_try_lock(run_dir))
            run._write_meta("running")
            run._reserve()
            return run
        if resume is True:
            run_dir, lock = _find_resumable(root, digest, saved)
        else:
            run_dir = _check_resumable(resume, config, digest, saved)
            lock = _try_lock(run_dir)
            if lock is None:
                raise RecboleGTCError(
                    f"{run_dir}: another process is training this run now (it holds {LOCK_FILE}); "
                    f"wait for it to end, or stop it and resume again"
                )
        try:
            with open(os.path.join(run_dir, RUN_FILE)) as handle:
                meta = json.load(handle)
            meta["config"] = config_values(config)  # the same configuration; an earlier version stored reprs
            meta["dataset_digest"] = data_digest
            meta.pop("error", None)
            for name in os.listdir(run_dir):  # a save the kill interrupted: the real file is intact
                if name.endswith(".tmp"):
                    os.remove(os.path.join(run_dir, name))
            run = cls(run_dir, digest, meta, resume_file=os.path.join(run_dir, RESUME_CHECKPOINT), lock=lock)
            run._write_meta("running")
            run._reserve()
        except BaseException:
            _unlock(lock)
            raise
        return run

    @classmethod
    def join(cls, run_dir, fingerprint_):
        """The run folder another process (global rank 0 of a multi-process run) created and
        owns; this one reads its ``best.pth`` and writes nothing there."""
        return _JoinedRun(run_dir, fingerprint_, {})

    def _write_meta(self, status, error=None):
        self.meta.update(status=status, pid=os.getpid(), updated=time.strftime("%Y-%m-%d %H:%M:%S"))
        if error is not None:
            self.meta["error"] = error

        def write(tmp):
            with open(tmp, "w") as handle:
                json.dump(self.meta, handle, indent=1, sort_keys=True)

        atomic_write(os.path.join(self.dir, RUN_FILE), write)

    def _reserve(self):
        """Keep :data:`RESERVE_BYTES` in ``run.reserve`` while training (best effort)."""
        try:
            with open(os.path.join(self.dir, RESERVE_FILE), "wb") as handle:
                handle.write(b"\0" * RESERVE_BYTES)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            self._remove(RESERVE_FILE)

    def _write_meta_if_possible(self, status, error=None):
        """:meth:`_write_meta` where a failure must not hide the error being reported (a full
        disk): ``run.json`` then keeps its previous state, which resume treats alike."""
        try:
            self._write_meta(status, error)
            return True
        except RecboleGTCError:
            return False

    def log_error(self, message):
        """Append ``message`` to ``run.log`` as an ERROR line (best effort: the disk may be full)."""
        line = f"{time.strftime('%a %d %b %Y %H:%M:%S')} ERROR  {message}\n"
        try:
            with open(self.log_file, "a", encoding="utf-8") as handle:
                handle.write(line)
        except OSError:
            pass

    def set_result(self, result):
        """Keep the :data:`RESULT_KEYS` of ``result`` (a :func:`~recbole_gtc.quick_start.quick_start.run_recbole_gtc`
        result) for ``run.json``; :meth:`finish` writes them with the state ``finished``."""
        self.meta["result"] = {key: json_value(result.get(key)) for key in RESULT_KEYS}

    def finish(self, keep_best=True):
        """A completed run keeps its best checkpoint (or none with ``keep_best=False``) and its log.

        ``run.json`` is written first: if that fails (a full disk), ``last.pth`` is still there
        and the run can be resumed (it tests again and finishes)."""
        self.meta.pop("error", None)
        self._remove(RESERVE_FILE)  # room for this last write of run.json on a full disk
        self._write_meta("finished")
        self._remove(RESUME_CHECKPOINT)
        if not keep_best:
            self._remove(BEST_CHECKPOINT)
        self.release(remove_lock=True)

    def fail(self, error=None):
        """A run that failed with an error removes its checkpoints and records ``error`` in
        ``run.json`` and ``run.log`` (which says why)."""
        self._remove(RESERVE_FILE)
        if error:
            self.log_error(f"error: {error}")
        self._remove(RESUME_CHECKPOINT)
        self._remove(BEST_CHECKPOINT)
        self._write_meta_if_possible("failed", error)
        self.release(remove_lock=True)

    def interrupt(self, error):
        """A run stopped by something it can continue after (Ctrl-C, a full disk): its
        checkpoints stay, ``run.json`` says ``interrupted`` and why, and ``--resume`` continues it.
        ``run.reserve`` is freed first, so that both writes fit on a full disk."""
        self._remove(RESERVE_FILE)
        self.log_error(f"error: {error}")
        self._write_meta_if_possible("interrupted", error)
        self.release()

    def release(self, remove_lock=False):
        """Give up the run's lock (the process ending does the same) and its reserve."""
        if self._lock is None:
            return
        self._remove(RESERVE_FILE)
        if remove_lock and self._lock >= 0:
            self._remove(LOCK_FILE)  # finished or failed: nobody resumes it, nothing to lock
        _unlock(self._lock)
        self._lock = None

    def __del__(self):  # a Run dropped without finish/fail/release (library use): free its lock
        _unlock(getattr(self, "_lock", None))

    def resume_text(self):
        """How to continue this run, in words: :data:`RESUME_HINT` or ``continue with --resume=<run folder>``."""
        return RESUME_HINT or f"continue with --resume={self.dir}"

    def kept_text(self):
        """What this run folder holds to continue from, in words."""
        if not os.path.isfile(self.resume_checkpoint):
            return None
        if self.saved_epoch is None:
            return f"{RESUME_CHECKPOINT} is kept"
        best = f" and {BEST_CHECKPOINT}" if os.path.isfile(self.best_checkpoint) else ""
        return f"{RESUME_CHECKPOINT} (epoch {self.saved_epoch}){best} kept"

    def _remove(self, name):
        path = os.path.join(self.dir, name)
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


class _JoinedRun(Run):
    """A non-zero rank's view of the shared run folder: every write is rank 0's."""

    def _write_meta(self, status, error=None):
        pass

    def log_error(self, message):
        pass

    def finish(self, keep_best=True):
        pass

    def fail(self, error=None):
        pass

    def interrupt(self, error):
        pass


def resumable_run(config, saved=True):
    """The folder of an interrupted run with ``config``'s fingerprint and ``saved`` setting
    under ``checkpoint_dir`` (its ``last.pth`` present, no process training it), or ``None``."""
    root = check_output_dir(config["checkpoint_dir"], "checkpoint_dir")
    try:
        run_dir, lock = _find_resumable(root, fingerprint(config), saved)
    except RecboleGTCError:
        return None
    _unlock(lock)
    return run_dir


#: States of ``run.json`` a run can be resumed from: ``running`` (its process was killed, or
#: is still training: then it holds the lock) and ``interrupted`` (Ctrl-C, a full disk).
RESUMABLE_STATES = ("running", "interrupted")


def _find_resumable(root, digest, saved=True):
    """``(run folder, its lock)``: the latest resumable run with ``digest``, locked for this process."""
    candidates = []
    for name in os.listdir(root):
        run_dir = os.path.join(root, name)
        try:
            with open(os.path.join(run_dir, RUN_FILE)) as handle:
                meta = json.load(handle)
        except (OSError, ValueError):
            continue
        if not isinstance(meta, dict) or meta.get("fingerprint") != digest:
            continue
        if meta.get("status") not in RESUMABLE_STATES:
            continue
        if meta.get("saved", True) != bool(saved):
            continue  # e.g. a tuning trial (no best.pth, no test) is not a study run
        if not os.path.isfile(os.path.join(run_dir, RESUME_CHECKPOINT)):
            continue
        candidates.append((os.path.getmtime(os.path.join(run_dir, RESUME_CHECKPOINT)), run_dir))
    busy = 0
    for _, run_dir in sorted(candidates, reverse=True):
        lock = _try_lock(run_dir)
        if lock is not None:
            return run_dir, lock
        busy += 1  # another process is training it
    also = f" ({busy} being trained by another process now)" if busy else ""
    raise RecboleGTCError(
        f"{root}: no interrupted run of this configuration to resume{also} (run without --resume to start one)"
    )


def _check_resumable(path, config, digest, saved=True):
    path = expand_path(path)
    run_dir = os.path.dirname(path) if os.path.isfile(path) else path
    meta_path = os.path.join(run_dir, RUN_FILE)
    if not os.path.isfile(meta_path) or not os.path.isfile(os.path.join(run_dir, RESUME_CHECKPOINT)):
        raise RecboleGTCError(f"{path}: not a resumable run folder (no {RUN_FILE} and {RESUME_CHECKPOINT})")
    try:
        with open(meta_path) as handle:
            meta = json.load(handle)
    except ValueError:
        raise RecboleGTCError(f"{meta_path}: unreadable run file") from None
    if meta.get("fingerprint") != digest:
        ours, ours_repr = config_values(config), config_items(config)
        theirs = meta.get("config", {})
        if meta.get("model") != config["model"]:
            why = f"it is a {meta.get('model')} run, not {config['model']}"
        elif meta.get("device", "cpu") != device_kind(config):
            theirs_on = meta.get("device", "cpu")
            how = "resume it with --use_gpu=False" if theirs_on == "cpu" else "resume it where a GPU is visible"
            why = f"it was trained on {theirs_on}, this run is on {device_kind(config)} ({how})"
        elif meta.get("dataset") != config["dataset"]:
            why = f"it was trained on dataset {meta.get('dataset')}, not {config['dataset']}"
        else:
            # a run.json of an earlier version holds reprs
            keys = sorted(k for k in set(ours) | set(theirs) if theirs.get(k) not in (ours.get(k), ours_repr.get(k)))
            why = (f"its configuration differs in {', '.join(keys[:5])}" if keys
                   else "the dataset files or library versions differ")
        raise RecboleGTCError(f"{path}: cannot resume: {why}")
    if meta.get("saved", True) != bool(saved):
        raise RecboleGTCError(f"{path}: cannot resume: it was started with --saved={meta.get('saved')}, "
                              f"this run has --saved={bool(saved)}")
    return run_dir


#: When set (e.g. ``logging.WARNING`` by a comparison study, which prints its own progress),
#: the console shows only messages at this level or above; ``run.log`` keeps everything.
CONSOLE_LEVEL = None


class _RunLogHandler(logging.FileHandler):
    """``run.log``'s handler: a write the file system refuses (a full disk) drops that line
    quietly instead of printing logging's traceback for every line; the run's own error line
    says what happened."""

    def handleError(self, record):
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handleError(record)


def init_run_logger(config, log_file):
    """RecBole's logger (coloured console + plain file) writing to this run's ``log_file``.

    RecBole's ``init_logger`` names the file by model, dataset, second and a hash of the
    configuration, so two identical runs started together share a file, and
    ``logging.basicConfig`` keeps the first run's file for every later model of a
    comparison. Here each run replaces the handlers with its own.
    """

    init(autoreset=True)
    level = getattr(logging, str(config["state"] or "INFO").upper(), logging.INFO)
    fh = _RunLogHandler(log_file)
    fh.setLevel(level)
    fh.setFormatter(logging.Formatter("%(asctime)-15s %(levelname)s  %(message)s", "%a %d %b %Y %H:%M:%S"))
    fh.addFilter(RemoveColorFilter())
    sh = logging.StreamHandler()
    sh.setLevel(max(level, CONSOLE_LEVEL or level))
    sh.setFormatter(colorlog.ColoredFormatter(
        "%(log_color)s%(asctime)-15s %(levelname)s  %(message)s", "%d %b %H:%M", log_colors=log_colors_config
    ))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    root.addHandler(sh)
    root.addHandler(fh)
