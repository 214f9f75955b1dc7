"""Multi-process training through RecBole's own distributed path (``torch.distributed``).

    recbole-gtc --model=GTC --dataset=synth-mm --nproc=2                       # two processes, one machine
    recbole-gtc ... --nproc=4 --world_size=8 --ip=HOST0 --port=5678 --group_offset=0   # on node 0
    recbole-gtc ... --nproc=4 --world_size=8 --ip=HOST0 --port=5678 --group_offset=4   # on node 1

The flags are those of RecBole's ``run_recbole.py``. Each process is one rank; RecBole's
machinery does the rest: its training dataloader gives each rank a disjoint
``1/world_size`` share of every batch (``DistributedSampler``), its trainer wraps the model
in ``DistributedDataParallel`` only to average the gradients of every step across ranks
(after the rank-0 parameters are broadcast once), and every rank therefore takes the same
optimizer step on the same batch as one process with ``train_batch_size`` would.

What differs from RecBole's path, and why:

* **CPU.** RecBole hard-codes the ``nccl`` backend and ``cuda:<local_rank>``; here the
  backend is ``gloo`` and the device the CPU when no GPU is used
  (:meth:`recbole_gtc.config.configurator.MMConfig._init_device`), and ``DistributedDataParallel``
  gets no ``device_ids`` for a CPU module (:func:`recbole_gtc.trainer.trainer.build_trainer`).
* **Exact evaluation.** RecBole shards the evaluation users too and averages the ranks'
  means weighted by their batch counts, which counts the users the sampler repeats to
  even out the shards twice. Here every rank ranks every user
  (:func:`recbole_gtc.data.utils.data_preparation`), so validation, early stopping and
  the test are exactly those of one process; evaluation is cheap next to training.
* **One run folder.** Global rank 0 creates the run folder (:mod:`recbole_gtc.trainer.run`) and
  writes ``best.pth``, ``run.log`` and ``run.json``; the other ranks read its ``best.pth``
  for the test, so across machines ``checkpoint_dir`` must be a shared folder.
* **Identical replicas.** Every rank builds the model from the run's ``seed`` (and
  ``DistributedDataParallel`` broadcasts rank 0's parameters once); the per-epoch random
  graph draws of GTC, DRAGON and FREEDOM depend on (seed, epoch) only, so they are the same
  on every rank. What each rank draws while training (negatives, diffusion noise) follows
  RecBole's rule, ``seed + rank``. After every evaluation the ranks check that their
  validation scores agree (early stopping must stop them together), and at the end of
  training that they hold the same parameters.
* **Threads.** Unless ``OMP_NUM_THREADS`` is set, each rank uses ``cores / nproc`` torch
  threads instead of all cores each.

``--resume`` and comparison studies (``--seeds``) run in one process only.
"""

import hashlib
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from recbole_gtc.config.configurator import PEER_TIMEOUT
from recbole_gtc.quick_start import quick_start
from recbole_gtc.trainer.run import Run, fingerprint
from recbole_gtc.utils.compat import quiet_library_warnings
from recbole_gtc.utils.errors import RecboleGTCError, stop_words

#: Keys the runner sets in each rank's configuration (never user configuration keys).
DISTRIBUTED_KEYS = ("local_rank", "world_size", "nproc", "offset", "ip", "port", "peer_timeout")


def distributed_settings(nproc=1, world_size=-1, ip="localhost", port=5678, group_offset=0,
                         peer_timeout=PEER_TIMEOUT):
    """Check RecBole's distributed flags; ``None`` for one process, else the keys every rank gets.

    Raises:
        RecboleGTCError: a flag out of range (one line naming it).
    """
    if nproc is None or nproc < 1:
        raise RecboleGTCError(f"--nproc={nproc}: must be at least 1")
    if world_size is None or world_size == -1 or world_size == 0:
        world_size = -1
    if nproc == 1 and world_size <= 0:
        return None
    if world_size == -1:
        world_size = nproc
    if world_size < 1:
        raise RecboleGTCError(f"--world_size={world_size}: must be at least 1 (or -1: --nproc)")
    if group_offset < 0 or group_offset + nproc > world_size:
        raise RecboleGTCError(f"--group_offset={group_offset} --nproc={nproc}: ranks {group_offset}.."
                              f"{group_offset + nproc - 1} do not fit in --world_size={world_size}")
    if not 0 < int(port) < 65536:
        raise RecboleGTCError(f"--port={port}: must be a TCP port (1..65535)")
    if not peer_timeout > 0:
        raise RecboleGTCError(f"--peer_timeout={peer_timeout}: must be a number of seconds > 0")
    return {"world_size": int(world_size), "nproc": int(nproc), "offset": int(group_offset),
            "ip": str(ip), "port": int(port), "peer_timeout": float(peer_timeout)}


def run_distributed(model, dataset, settings, config_file_list=None, cmd_args=None, saved=True):
    """Train and test ``model`` with ``settings["nproc"]`` processes on this machine.

    Args:
        model, dataset, config_file_list, cmd_args, saved: as
            :func:`recbole_gtc.quick_start.quick_start.run_recbole_gtc`.
        settings (dict): :func:`distributed_settings`.

    Returns:
        dict: global rank 0's result (as :func:`~recbole_gtc.quick_start.quick_start.run_recbole_gtc`,
        plus ``world_size``), or ``None`` on a machine without global rank 0
        (``group_offset > 0``).

    Raises:
        RecboleGTCError: a bad configuration (checked here before any process starts) or
            a rank that failed (its last error line).
    """

    quick_start.load_config(model, dataset, config_file_list, cmd_args=cmd_args)  # errors before any process starts
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    result = None
    try:
        processes = mp.spawn(_rank_main, nprocs=settings["nproc"], join=False,
                             args=(model, dataset, config_file_list, list(cmd_args or []), saved, settings, queue))
        # Read while waiting: rank 0's result (with its per-user values) can exceed a pipe's
        # buffer, and its put() blocks until it is read.
        finished = False
        while not finished:
            finished = processes.join(timeout=0.5)
            while not queue.empty():
                result = queue.get()
    except mp.ProcessRaisedException as exc:
        raise RecboleGTCError(f"multi-process training failed: {_last_error_line(str(exc))}") from None
    except mp.ProcessExitedException as exc:
        raise RecboleGTCError(f"multi-process training failed: {exc}") from None
    return result


def _last_error_line(text):
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "unknown error"
    return last.split("RecboleGTCError: ", 1)[-1]


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _rank_main(local_rank, model, dataset, config_file_list, cmd_args, saved, settings, queue):
    """One rank: its configuration (which joins the process group), the shared run folder,
    training and test; global rank 0 reports the result."""

    with quiet_library_warnings():  # the parent's filters do not reach a spawned process
        _rank_train(local_rank, model, dataset, config_file_list, cmd_args, saved, settings, queue)


def _rank_train(local_rank, model, dataset, config_file_list, cmd_args, saved, settings, queue):
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings["nproc"]))
    config = quick_start.load_config(model, dataset, config_file_list, cmd_args=cmd_args,
                                     distributed=dict(settings, local_rank=local_rank))
    rank = dist.get_rank()
    run = None
    try:
        if rank == 0:
            run = Run.start(config, saved=saved)
        run_dir = [run.dir if run is not None else None]
        dist.broadcast_object_list(run_dir, src=0)
        if run is None:
            run = Run.join(run_dir[0], fingerprint(config))
        result = quick_start._train_and_test(config, run, saved, after_fit=_after_fit)
        result["world_size"] = dist.get_world_size()
    except BaseException as exc:
        if run is not None:  # a no-op on the ranks that joined rank 0's folder
            # a multi-process run is not resumable: even a Ctrl-C or a full disk fails it
            run.fail(f"interrupted ({stop_words(exc)})" if isinstance(exc, KeyboardInterrupt) else _first_line(exc))
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        run.finish(keep_best=saved)
        queue.put(result)


def _after_fit(trainer):
    """Between training and test: every rank must hold the same parameters, and the test
    (which loads ``best.pth``) waits until rank 0 has written it."""

    if not replicas_identical(trainer.model):
        raise RecboleGTCError("the ranks ended training with different parameters")
    dist.barrier()


def replicas_identical(model):
    """Whether every rank holds bit-identical parameters (a collective: every rank calls it)."""

    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        if tensor.is_sparse:
            tensor = torch.cat([tensor.coalesce().indices().reshape(-1).double(),
                                tensor.coalesce().values().reshape(-1).double()])
        elif tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest.hexdigest())
    return len(set(digests)) == 1
