"""Dataset and dataloader construction: RecBole's, with multi-modal datasets and the evaluation protocol."""

import contextlib
import os
import pickle
from logging import getLogger

from recbole.data import create_dataset as recbole_create_dataset
from recbole.data.dataset import Dataset
from recbole.data.utils import create_samplers as recbole_create_samplers
from recbole.data.utils import get_dataloader
from recbole.utils import ModelType, set_color

from recbole_gtc.data.atomic import check_dataset_folder
from recbole_gtc.data.dataset import MultiModalDataset
from recbole_gtc.data.features import first_line, load_feature_matrix
from recbole_gtc.data.sampler import MMRecSampler
from recbole_gtc.data.splits import check_splits
from recbole_gtc.utils.errors import RecboleGTCError
from recbole_gtc.utils.utils import BUNDLED_DATASETS, MMREC_DATASETS

PROTOCOLS = ("mmrec", "recbole")


def check_dataset_present(config):
    """Fail with instructions instead of letting RecBole try to download a missing dataset."""
    name = config["dataset"]
    path = config["data_path"]  # RecBole's Config has joined the dataset name onto it
    if os.path.isdir(path):
        return
    if name in MMREC_DATASETS:
        raise RecboleGTCError(
            f"dataset '{name}' not found at {path}. Its files come from the MMRec authors' release "
            f"(https://github.com/enoche/MMRec, 'data' section: {name}.inter, image_feat.npy, text_feat.npy). "
            f"Put them in a folder SRC and run: python -m recbole_gtc.prepare mmrec SRC --dataset {name}"
        )
    raise RecboleGTCError(
        f"dataset '{name}' not found at {path} (bundled: {', '.join(BUNDLED_DATASETS)}; "
        f"import others with: python -m recbole_gtc.prepare mmrec SRC --dataset NAME)"
    )


def check_dataset_files(config):
    """Every check of the dataset's files that can run before anything is printed: the
    folder exists and each modality's feature file is a valid, finite 2-D float matrix.

    Raises:
        RecboleGTCError: one line naming the folder or file.
    """
    check_dataset_present(config)
    check_dataset_folder(config)
    modalities = config["modalities"]
    if not modalities:
        return
    if not isinstance(modalities, dict):
        raise RecboleGTCError(
            f"dataset '{config['dataset']}': 'modalities' must map modality names to .npy files, got {modalities!r}"
        )
    folder = config["data_path"]
    for filename in modalities.values():
        load_feature_matrix(os.path.join(folder, str(filename)))


def create_dataset(config):
    """A :class:`MultiModalDataset` when the config names ``modalities``, else RecBole's choice."""
    check_dataset_present(config)
    check_dataset_folder(config)
    if config["modalities"]:
        dataset = MultiModalDataset(config)
        if config["save_dataset"]:
            dataset.save()
        return dataset
    return _general_dataset(config)


def _general_dataset(config):
    """RecBole's :class:`Dataset`, built from the files.

    RecBole's ``create_dataset`` first loads ``<checkpoint_dir>/<dataset>-Dataset.pth``
    (written by ``save_dataset``) whenever it exists and its dataset keys match, even when
    the data files changed since (its key ignores them) or the pickle is truncated; that
    implicit cache is never read here. An explicit ``dataset_save_path`` is loaded with
    RecBole's rule, and an unreadable one is an error naming it.
    """
    if config["dataset_save_path"]:
        try:
            return recbole_create_dataset(config)
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, ValueError) as err:
            raise RecboleGTCError(
                f"{config['dataset_save_path']}: saved dataset cannot be read ({first_line(err)}); "
                f"delete it or unset dataset_save_path"
            ) from None
    dataset = Dataset(config)
    if config["save_dataset"]:
        dataset.save()
    return dataset


def create_samplers(config, dataset, built_datasets):
    """RecBole's samplers, or :class:`MMRecSampler` for every phase under ``eval_protocol: mmrec``."""
    protocol = config["eval_protocol"] or "recbole"
    if protocol not in PROTOCOLS:
        raise RecboleGTCError(f"eval_protocol must be one of {PROTOCOLS}, got '{protocol}'")
    if protocol == "recbole":
        return recbole_create_samplers(config, dataset, built_datasets)
    if config["repeatable"]:
        raise RecboleGTCError("eval_protocol: mmrec needs repeatable: False (general recommendation)")
    for phase in ("valid", "test"):
        if config[f"{phase}_neg_sample_args"]["sample_num"] != "none":
            raise RecboleGTCError("eval_protocol: mmrec is defined for full ranking (eval_args.mode: full)")
    train_args = config["train_neg_sample_args"]
    distribution = train_args["distribution"] if train_args["distribution"] != "none" else "uniform"
    base = MMRecSampler(["train", "valid", "test"], built_datasets, distribution, train_args["alpha"])
    train_sampler = base.set_phase("train") if train_args["distribution"] != "none" else None
    return train_sampler, base.set_phase("valid"), base.set_phase("test")


def check_model_type(name, model_type):
    """recbole-gtc runs general recommenders (RecBole's general_recommender folder: GENERAL and TRADITIONAL)."""
    if model_type not in (ModelType.GENERAL, ModelType.TRADITIONAL):
        raise RecboleGTCError(f"recbole-gtc runs general recommenders; {name} is a {model_type.name.lower()} model")


@contextlib.contextmanager
def _unsharded(config):
    """Build dataloaders that give every rank of a multi-process run all rows.

    RecBole's dataloaders shard by rank whenever ``single_spec`` is False. For evaluation
    every rank ranks every user instead (:mod:`recbole_gtc.quick_start.distributed`: exact metrics,
    one process's early stopping), so the loaders are built as for one process.
    """
    single_spec = config["single_spec"]
    config["single_spec"] = True
    try:
        yield
    finally:
        config["single_spec"] = single_spec


def data_preparation(config, dataset):
    """Split by the dataset's benchmark files and build train/valid/test dataloaders.

    Mirrors :func:`recbole.data.utils.data_preparation` for general recommenders, with
    :func:`create_samplers` choosing the evaluation protocol, after the splits' checks
    (:func:`recbole_gtc.data.splits.check_splits`).
    """
    check_model_type(config["model"], config["MODEL_TYPE"])
    # What `prepare mmrec` checks, on the splits RecBole built (recbole_gtc.data.splits): leaked
    # pairs, empty splits and users with every item refused; users without training rows left
    # out of evaluation; all before a sampler, a model or an epoch exists.
    built_datasets = check_splits(config, dataset, dataset.build())
    train_dataset, valid_dataset, test_dataset = built_datasets
    train_sampler, valid_sampler, test_sampler = create_samplers(config, dataset, built_datasets)
    train_data = get_dataloader(config, "train")(config, train_dataset, train_sampler, shuffle=config["shuffle"])
    if not config["single_spec"]:
        # RecBole's DistributedSampler shuffles with seed 0 whatever the run's seed.
        train_data.sampler.seed = config["seed"]
    with _unsharded(config):
        valid_data = get_dataloader(config, "valid")(config, valid_dataset, valid_sampler, shuffle=False)
        test_data = get_dataloader(config, "test")(config, test_dataset, test_sampler, shuffle=False)
    getLogger().info(
        set_color("[Protocol]: ", "pink") + set_color(f"eval_protocol = {config['eval_protocol']}", "yellow")
    )
    return train_data, valid_data, test_data
