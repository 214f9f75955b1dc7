"""Top-K recommendations for named users from a trained checkpoint.

    python run_recbole_gtc.py --recommend --checkpoint saved/GTC-baby-.../ --users u1,u2 --topk 10
    python run_recbole_gtc.py --recommend --checkpoint best.pth --users u1 --out ~/recs.csv --data_path ~/data

The checkpoint is a run's ``best.pth`` (or its run folder). The dataset, its split and the
model are rebuilt from the configuration stored in it, the weights come from it, and every
item of a user's TRAINING interactions is left out. The output is CSV ``user,rank,item,score``
(external tokens, rank 1..K, best first); ties in score go to the item with the smaller
internal id (RecBole numbers item tokens in order of first appearance: the interaction
files, then the item file).
"""

import argparse
import contextlib
import csv
import io
import json
import logging
import os
import sys
import warnings

import numpy as np
import torch
from recbole.config import Config
from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from recbole_gtc.data import create_dataset, data_preparation
from recbole_gtc.trainer.run import BEST_CHECKPOINT, RUN_FILE, dataset_digest
from recbole_gtc.trainer.trainer import non_finite_tensor
from recbole_gtc.utils.compat import quiet_library_warnings
from recbole_gtc.utils.errors import RecboleGTCError, stop_status, stop_words
from recbole_gtc.utils.files import atomic_write, check_output_dir, expand_path
from recbole_gtc.utils.utils import get_model

#: Unknown user tokens named in an error message, at most.
MAX_NAMED = 5


def build_parser():
    parser = argparse.ArgumentParser(
        prog="recbole-gtc", description=__doc__.split("\n\n")[0], allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--recommend", action="store_true", required=True,
                        help="recommend from a checkpoint instead of training")
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="a run's best.pth, or its run folder")
    parser.add_argument("--users", required=True, metavar="U1,U2,...",
                        help="comma-separated user tokens, as in the dataset's atomic files")
    parser.add_argument("--topk", type=int, default=10, metavar="K",
                        help="items per user (default: %(default)s)")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="write the CSV to FILE (default: print it)")
    parser.add_argument("--data_path", default=None, metavar="DIR",
                        help="the folder holding the dataset folder, when it moved since training "
                             "(default: where the run found it)")
    parser.add_argument("--allow_dataset_change", action="store_true",
                        help="recommend even when the dataset's files differ from those the run trained on "
                             "(recorded in its run.json): a warning instead of an error")
    return parser


def main(argv=None):
    """``--recommend`` command line; returns the exit status (2 for every user error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed usage and the error (or --help)
        return exc.code if isinstance(exc.code, int) else 2
    if args.topk < 1:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: --topk must be a positive integer, got {args.topk}", file=sys.stderr)
        return 2

    try:
        users = parse_users(args.users)
        with quiet_library_warnings(), _quiet_info_logs():
            rows, short = recommend(args.checkpoint, users, topk=args.topk, data_path=args.data_path,
                                    allow_dataset_change=args.allow_dataset_change)
    except RecboleGTCError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"error: interrupted ({stop_words(exc)}): no recommendations written", file=sys.stderr)
        return stop_status(exc)
    if short:
        named = ", ".join(f"{u} ({n})" for u, n in short[:MAX_NAMED])
        more = f" and {len(short) - MAX_NAMED} more" if len(short) > MAX_NAMED else ""
        print(f"note: fewer than {args.topk} items outside their training interactions for {named}{more}",
              file=sys.stderr)
    text = to_csv(rows)
    if args.out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    path = expand_path(args.out)
    if os.path.isdir(path):
        print(f"error: {path}: --out is a folder; name the CSV file to write", file=sys.stderr)
        return 2

    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)

    try:
        atomic_write(path, write)  # an existing file is replaced whole, never left half-written
    except RecboleGTCError as exc:  # WriteError / DiskFullError: a file that was there is unchanged
        print(f"error: {exc} (--out)", file=sys.stderr)
        return 2
    print(f"wrote {len(rows)} recommendations for {len(users)} user(s) to {path}", file=sys.stderr)
    return 0


def parse_users(text):
    """``"u1, u2,u1"`` -> ``["u1", "u2"]`` (order kept, duplicates dropped); none is an error."""
    users = list(dict.fromkeys(u.strip() for u in str(text).split(",") if u.strip()))
    if not users:
        raise RecboleGTCError("--users: no user token given (comma-separated tokens, e.g. --users 12,40)")
    return users


def to_csv(rows):
    """The CSV text, header ``user,rank,item,score``, one line per row of :func:`recommend`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("user", "rank", "item", "score"))
    for user, rank, item, score in rows:
        # numpy's float32 repr is the shortest text that reads back as the same float32 score.
        writer.writerow((user, rank, item, str(np.float32(score))))
    return buffer.getvalue()


@contextlib.contextmanager
def _quiet_info_logs():
    """RecBole's dataset and model construction logs at INFO; after a run in the same process
    the root logger still writes to that run's log, which must not receive this command's lines.
    Also hides torch's sparse-constructor deprecation raised by RecBole's graph models."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            # Raised from RecBole 1.2.1's own LightGCN/NGCF construction; nothing a user can change.
            warnings.filterwarnings("ignore", message=r"torch\.sparse\.SparseTensor.*is deprecated")
            yield
    finally:
        root.setLevel(level)


#: For other commands that rebuild a run (``python -m recbole_gtc.diagnose``).
quiet_info_logs = _quiet_info_logs


# ---------------------------------------------------------------------- loading
def checkpoint_file(path):
    """``path`` (``~`` expanded) if a file, else ``<path>/best.pth`` for a run folder."""
    path = expand_path(path)
    if os.path.isdir(path):
        best = os.path.join(path, BEST_CHECKPOINT)
        if not os.path.isfile(best):
            raise RecboleGTCError(
                f"{path}: no {BEST_CHECKPOINT} in this run folder (a run with --saved=False or a failed run keeps none)"
            )
        return best
    if not os.path.isfile(path):
        raise RecboleGTCError(f"{path}: checkpoint not found")
    return path


def load_checkpoint(path):
    """The checkpoint dict (``config``, ``state_dict``, ``other_parameter``, ...), tensors on the CPU."""
    try:
        # weights_only=False: RecBole's checkpoints pickle the run's Config object, which the
        # safe loader refuses. The file is the user's own run output, named on their command line.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated, not a torch file, or written by an incompatible version
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise RecboleGTCError(f"{path}: unreadable checkpoint ({text})") from None
    if not isinstance(state, dict) or "config" not in state or "state_dict" not in state:
        resume_state = isinstance(state, dict) and "rng" in state
        hint = " (last.pth is a resume state; use the run's best.pth)" if resume_state else ""
        raise RecboleGTCError(f"{path}: not a model checkpoint: no 'config' and 'state_dict'{hint}")
    config, weights = state["config"], state["state_dict"]
    if not isinstance(config, Config) or not isinstance(weights, dict) \
            or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise RecboleGTCError(f"{path}: not a RecBole checkpoint: its 'config' is a {type(config).__name__}, not "
                              f"RecBole's Config, or its 'state_dict' is not a mapping of tensors")
    for key in ("model", "dataset", "data_path", "seed"):
        try:
            config[key]
        except Exception:
            raise RecboleGTCError(f"{path}: not a RecBole checkpoint: its configuration has no '{key}'") from None

    bad = non_finite_tensor(weights.items())
    if bad is not None:  # this version never saves one; an older version's diverged run could
        raise RecboleGTCError(f"{path}: holds non-finite weights (NaN or inf in {bad}): the run diverged; "
                              f"retrain it (e.g. with a smaller learning_rate)")
    return state


def _locate_dataset(config, data_path, checkpoint):
    """Point ``config['data_path']`` (RecBole's joined ``<data_path>/<dataset>``) at the dataset folder.

    ``data_path`` is the folder holding ``<dataset>/`` (as in training); the dataset folder
    itself (named like the dataset) is accepted too.
    """
    name = config["dataset"]
    if data_path is None:
        folder = config["data_path"]
        if not os.path.isdir(folder):
            raise RecboleGTCError(
                f"{folder}: dataset folder of checkpoint {checkpoint} not found; if '{name}' moved, "
                f"pass --data_path DIR (the folder that holds '{name}/')"
            )
        return
    root = expand_path(data_path)
    if os.path.isdir(os.path.join(root, name)):
        config["data_path"] = os.path.join(root, name)
    elif os.path.isdir(root) and os.path.basename(os.path.normpath(root)) == name:
        config["data_path"] = root
    else:
        raise RecboleGTCError(f"{root}: --data_path holds no dataset folder '{name}'")


def check_dataset_unchanged(path, config, allow_change=False):
    """Compare the dataset found with the one the run trained on (``dataset_digest`` in the
    ``run.json`` next to the checkpoint; a checkpoint without one is not checked).

    Another dataset under the same name (other training rows, same sizes) would load the
    weights without a complaint and exclude the wrong items.

    Raises:
        RecboleGTCError: the dataset differs, unless ``allow_change`` (then a warning on stderr).
    """


    meta_path = os.path.join(os.path.dirname(os.path.abspath(path)), RUN_FILE)
    try:
        with open(meta_path) as handle:
            meta = json.load(handle)
        expected = meta.get("dataset_digest") if isinstance(meta, dict) else None
    except (OSError, ValueError):
        return
    if not expected or dataset_digest(config["data_path"]) == expected:
        return
    message = (f"{config['data_path']}: not the dataset checkpoint {path} was trained on (its files differ from "
               f"those recorded in {meta_path})")
    if not allow_change:
        raise RecboleGTCError(f"{message}; point --data_path at the run's dataset, or pass --allow_dataset_change "
                              f"to recommend from it anyway")
    print(f"warning: {message}; recommending anyway (--allow_dataset_change)", file=sys.stderr)


def load_data(checkpoint, data_path=None, allow_dataset_change=False):
    """The checkpoint and the run's training split, rebuilt from the configuration stored in it.

    Args:
        checkpoint (str): a ``best.pth`` or a run folder holding one.
        data_path (str, optional): the folder holding the dataset folder (default: the run's).
        allow_dataset_change (bool): a dataset other than the run's is a warning, not an error
            (:func:`check_dataset_unchanged`).

    Returns:
        (str, dict, Config, Dataset): the checkpoint file, its content, the run's configuration
        (pointed at the dataset found) and the training split the model was trained on.
    """
    path, state, config, (train, _, _) = load_splits(checkpoint, data_path, allow_dataset_change)
    return path, state, config, train


def load_splits(checkpoint, data_path=None, allow_dataset_change=False):
    """:func:`load_data` with all three splits: ``(path, state, config, (train, valid, test))``,
    each split a RecBole dataset."""
    path = checkpoint_file(checkpoint)
    state = load_checkpoint(path)
    config = state["config"]
    _locate_dataset(config, data_path, path)
    check_dataset_unchanged(path, config, allow_dataset_change)
    device = config["device"]
    if device is None or (torch.device(device).type == "cuda" and not torch.cuda.is_available()):
        config["device"] = torch.device("cpu")  # a GPU run scored on a machine without one
    if not config["single_spec"]:
        # A checkpoint of a multi-process run (--nproc) stores its rank's configuration, whose
        # training loader would ask for the process group; scoring is one process's work.
        config["single_spec"] = True
        config["local_rank"] = 0
        if torch.device(config["device"]).type == "cuda":
            config["device"] = torch.device("cuda")

    # The run's seeding: a ratio split with random order draws from torch's generator, so the
    # training split (whose items are excluded) is the run's only if seeded alike.
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    splits = data_preparation(config, dataset)
    return path, state, config, tuple(split.dataset for split in splits)


def build_model(path, state, config, train_dataset):
    """The model of ``config`` on ``train_dataset`` with the checkpoint's weights, in eval mode.

    Arguments as returned by :func:`load_data`.
    """

    if config["graph_cache_dir"]:
        try:  # the run's cache folder may be gone or read-only here: then graphs are built in memory
            config["graph_cache_dir"] = check_output_dir(config["graph_cache_dir"], "graph_cache_dir")
        except RecboleGTCError:
            config["graph_cache_dir"] = None
    # Construction draws random initial weights, all replaced by the checkpoint's; seeding as
    # the run did keeps anything the checkpoint might not hold identical to the run's anyway.
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_dataset).to(config["device"])
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as exc:  # e.g. the dataset changed since training: other user/item counts
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)
        raise RecboleGTCError(
            f"{path}: weights do not fit the dataset at {config['data_path']} ({detail[:160]})"
        ) from None
    model.load_other_parameter(state.get("other_parameter"))
    model.eval()
    return model


def load_model(checkpoint, data_path=None):
    """:func:`load_data` then :func:`build_model`: ``(config, model, train_dataset)``."""
    path, state, config, train_dataset = load_data(checkpoint, data_path)
    return config, build_model(path, state, config, train_dataset), train_dataset


def user_ids(dataset, users):
    """Internal ids ``(n,)`` LongTensor of external user tokens; unknown ones are one error."""
    token_map = dataset.field2token_id[dataset.uid_field]
    pad = dataset.field2id_token[dataset.uid_field][0]
    unknown = [u for u in users if u not in token_map or u == pad]
    if unknown:
        named = ", ".join(unknown[:MAX_NAMED])
        if len(unknown) > MAX_NAMED:
            named += f" and {len(unknown) - MAX_NAMED} more"
        raise RecboleGTCError(f"--users: unknown user(s) in dataset '{dataset.dataset_name}': {named}")
    ids = torch.tensor([token_map[u] for u in users], dtype=torch.long)
    counts = np.diff(dataset.inter_matrix(form="csr").indptr)
    untrained = [u for u, uid in zip(users, ids.tolist()) if uid >= len(counts) or counts[uid] == 0]
    if untrained:
        named = ", ".join(untrained[:MAX_NAMED])
        if len(untrained) > MAX_NAMED:
            named += f" and {len(untrained) - MAX_NAMED} more"
        raise RecboleGTCError(f"--users: user(s) without training interactions in dataset '{dataset.dataset_name}': "
                              f"{named} (the model learned nothing about them: their scores are random)")
    return ids


# ---------------------------------------------------------------------- scoring
def score_users(model, dataset, uids, batch_size=256, device="cpu"):
    """``full_sort_predict`` scores, ``(len(uids), n_items)`` float32 on the CPU, for the
    internal user ids ``uids`` ``(n,)``, ``batch_size`` users per call on ``device``."""

    n_items = dataset.item_num
    parts = []
    with torch.no_grad():
        for start in range(0, len(uids), batch_size):
            batch = uids[start:start + batch_size]
            interaction = Interaction({dataset.uid_field: batch}).to(device)
            # RecBole's general models return (B * n_items,), recbole-gtc's (B, n_items).
            scores = model.full_sort_predict(interaction)
            parts.append(scores.reshape(len(batch), n_items).float().cpu())
    return torch.cat(parts) if parts else torch.zeros(0, n_items)


def mask_training_items(scores, dataset, uids):
    """Set ``scores[r, j] = -inf`` (in place) for the padding item 0 and every item the user
    ``uids[r]`` has in ``dataset`` (the training split). ``scores``: ``(len(uids), n_items)``."""
    matrix = dataset.inter_matrix(form="csr")
    scores[:, 0] = float("-inf")
    for row, uid in enumerate(uids.tolist()):
        seen = matrix.indices[matrix.indptr[uid]:matrix.indptr[uid + 1]]
        scores[row, torch.from_numpy(np.asarray(seen, dtype=np.int64))] = float("-inf")
    return scores


def top_k(scores, k):
    """Best ``k`` columns per row, ``((n, k) ids, (n, k) scores)``, highest score first; equal
    scores keep ascending column order (a stable sort), so the result never depends on the
    sort's implementation. Rows may end in ``-inf`` entries (excluded items)."""
    values, order = torch.sort(scores, dim=1, descending=True, stable=True)
    return order[:, :k], values[:, :k]


def recommend(checkpoint, users, topk=10, data_path=None, allow_dataset_change=False):
    """Top-``topk`` items for each user token in ``users`` from a checkpoint.

    Returns:
        (list of tuple, list of tuple): rows ``(user, rank, item, score)`` (tokens, rank 1..K,
        float score), users in the order given; and ``(user, n)`` for every user with only
        ``n < topk`` items outside their training interactions (they get ``n`` rows).

    Raises:
        RecboleGTCError: missing, unreadable or non-finite checkpoint, dataset not found or not the
        run's, unknown users or users without training rows, ``topk`` not in ``1..n_items``,
        non-finite scores.
    """
    users = list(users)
    if not users:
        raise RecboleGTCError("--users: no user token given")
    path, state, config, train_dataset = load_data(checkpoint, data_path, allow_dataset_change)
    uids = user_ids(train_dataset, users)  # before the model is built: its graph cache writes files
    n_real = train_dataset.item_num - 1  # internal id 0 is padding
    if not 1 <= int(topk) <= n_real:
        raise RecboleGTCError(f"--topk must be between 1 and the number of items ({n_real}), got {topk}")
    model = build_model(path, state, config, train_dataset)
    # RecBole's full-sort evaluation batch: eval_batch_size scores, i.e. that many // n_items users.
    batch_size = max(1, int(config["eval_batch_size"] or 4096) // train_dataset.item_num)
    scores = score_users(model, train_dataset, uids, batch_size=batch_size, device=config["device"])
    finite = torch.isfinite(scores[:, 1:]).all(dim=1)  # column 0 is the padding item
    if not finite.all():
        named = ", ".join([u for u, ok in zip(users, finite.tolist()) if not ok][:MAX_NAMED])
        raise RecboleGTCError(f"{path}: the model gives non-finite scores (NaN or inf) for user(s) {named}; its "
                              f"ranking would be arbitrary: retrain the run (e.g. with a smaller learning_rate)")
    ids, values = top_k(mask_training_items(scores, train_dataset, uids), int(topk))
    rows, short = [], []
    for user, item_row, value_row in zip(users, ids, values):
        keep = value_row != float("-inf")  # excluded items, reached when few items are left
        items, kept = item_row[keep], value_row[keep]
        if len(items) < topk:
            short.append((user, len(items)))
        tokens = train_dataset.id2token(train_dataset.iid_field, items.numpy()) if len(items) else []
        for rank, (token, score) in enumerate(zip(tokens, kept.tolist()), start=1):
            rows.append((user, rank, str(token), score))
    return rows, short
