"""RecBole's Config with recbole-gtc's configuration cascade.

Priority, lowest first:

1. RecBole's own defaults (its ``overall.yaml`` and, for built-in models, its model YAML);
2. ``properties/overall.yaml`` (this package's defaults: the published evaluation protocol);
3. the model's YAML, ``properties/model/<model>.yaml`` (when this package has one);
4. the dataset's YAML, ``<data_path>/<dataset>/<dataset>.yaml`` (written by the importers),
   so per-dataset hyper-parameters override model defaults, as in RecBole's own cascade;
5. ``--config_files`` (in the order given);
6. ``config_dict`` and then command-line ``--key=value`` overrides (RecBole's rule).

Layers 2-4 are folded into RecBole's *internal* config, so every external input
still overrides them exactly as in RecBole.
"""

import datetime
import os
import sys

import torch
import torch.distributed as dist
import yaml
from recbole.config import Config

from recbole_gtc.config.validation import check_before_recbole
from recbole_gtc.utils.errors import RecboleGTCError
from recbole_gtc.utils.files import expand_path
from recbole_gtc.utils.utils import PROPERTIES_DIR, default_data_path, get_model


def parse_override(arg):
    """``"--key=value"`` -> ``("key", "value")``; anything else is a one-line error."""
    if not arg.startswith("--") or "=" not in arg or arg.startswith("--="):
        raise RecboleGTCError(f"command-line override '{arg}' is not of the form --key=value")
    key, value = arg[2:].split("=", 1)
    return key, value


#: Seconds every process of a multi-process run waits for all ``world_size`` processes to join
#: (``--peer_timeout``); torch's own default, 30 minutes, looks like a hang when another
#: machine's command was never started.
PEER_TIMEOUT = 600


class MMConfig(Config):
    """:class:`recbole.config.Config` plus the cascade above.

    Args:
        model (str or type): model name or class.
        dataset (str): dataset name (a folder under ``data_path``).
        config_file_list (list of str, optional): user YAML files, later ones win.
        config_dict (dict, optional): parameter overrides.
        cmd_args (list of str, optional): ``--key=value`` overrides. ``None`` reads
            ``sys.argv`` as RecBole does; pass ``[]`` from library code and tests so
            that foreign command-line flags (pytest's, say) never leak in.
        distributed (dict, optional): one rank's ``local_rank``, ``world_size``, ``nproc``,
            ``offset``, ``ip`` and ``port`` (:mod:`recbole_gtc.quick_start.distributed`); the
            configuration then joins the process group, as RecBole's does.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None,
                 distributed=None):
        self._cmd_args = cmd_args
        self._distributed = dict(distributed) if distributed else None
        if isinstance(model, str):
            model = get_model(model)  # recbole-gtc models too, not only RecBole's
        config_file_list = [expand_path(path) for path in config_file_list or []]
        for path in config_file_list:
            if not os.path.isfile(path):
                raise RecboleGTCError(f"{path}: config file not found")
        super().__init__(model, dataset, config_file_list, config_dict)
        self._tell_the_truth()

    def _tell_the_truth(self):
        """Make the printed configuration say what is actually used: ``use_gpu`` is False
        when the run is on the CPU (no CUDA device, or an empty ``gpu_id``), and a dataset with
        fixed split files shows them as its split instead of RecBole's unused default ratio split."""

        if torch.device(self.final_config_dict["device"]).type == "cpu":
            self.final_config_dict["use_gpu"] = False
        benchmark = self.final_config_dict.get("benchmark_filename")
        if benchmark and isinstance(self.final_config_dict.get("eval_args"), dict):
            self.final_config_dict["eval_args"]["split"] = {"benchmark": list(benchmark)}
        for key in ("checkpoint_dir", "graph_cache_dir"):
            if self.final_config_dict.get(key):
                self.final_config_dict[key] = expand_path(self.final_config_dict[key])

    def _load_cmd_line(self):
        if self._cmd_args is None:
            return super()._load_cmd_line()
        cmd_config_dict = dict(parse_override(arg) for arg in self._cmd_args)
        return self._convert_config_dict(cmd_config_dict)

    # RecBole's Config checks some values while it is built and raises Python errors
    # (ValueError, TypeError, NotImplementedError, ...) for bad ones. The keys it checks are
    # validated first (recbole_gtc.config.validation), and whatever it still raises becomes one line.
    def _set_default_parameters(self):
        check_before_recbole(self.final_config_dict, self.external_config_dict, self.model)
        _one_line_errors(super()._set_default_parameters)

    def _init_device(self):
        if self._distributed is None:
            return self._init_single_device()
        return self._init_distributed_device()

    def _init_single_device(self):
        """RecBole 1.2.1's single-process ``_init_device``, with ``use_gpu`` obeyed.

        RecBole picks the device from ``gpu_id`` alone (``use_gpu=False`` still trained on the
        GPU, while the printed configuration said ``use_gpu = False``) and always writes
        ``gpu_id`` into ``CUDA_VISIBLE_DEVICES`` (a scheduler's ``CUDA_VISIBLE_DEVICES=3``
        became the default ``gpu_id``'s ``0``, and ``--nproc=2`` saw one GPU). Here:

        * ``use_gpu: False``: the CPU; ``CUDA_VISIBLE_DEVICES`` is left as it is.
        * ``use_gpu: True``: CUDA when a device is visible, else the CPU. ``CUDA_VISIBLE_DEVICES``
          is set from ``gpu_id`` only when the user gave ``gpu_id`` (config files, ``config_dict``,
          command line), never from its default; an empty ``gpu_id`` means the CPU (RecBole's rule).
        """

        config = self.final_config_dict
        gpu_id = config["gpu_id"]
        gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, tuple) else str(gpu_id)
        config["gpu_id"] = gpu_id
        use_gpu = bool(config["use_gpu"])
        given = "gpu_id" in self.external_config_dict
        if use_gpu and given:
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
        cuda = use_gpu and not (given and len(gpu_id) == 0) and torch.cuda.is_available()
        config["single_spec"] = True
        config["local_rank"] = 0
        config["device"] = torch.device("cuda") if cuda else torch.device("cpu")

    def _init_distributed_device(self):
        """RecBole's distributed branch of ``_init_device``, which only knows ``nccl`` on
        ``cuda:<local_rank>``, extended to the CPU: ``gloo`` when no GPU is used. Each local rank
        takes the visible GPU of its number (``CUDA_VISIBLE_DEVICES``, or ``gpu_id`` when given)."""

        self._init_single_device()  # gpu_id normalisation, use_gpu and the single-process keys
        self.final_config_dict.update(self._distributed)
        local_rank = self.final_config_dict["local_rank"]
        use_cuda = self.final_config_dict["device"].type == "cuda"
        if use_cuda and local_rank >= torch.cuda.device_count():
            given = "gpu_id" in self.external_config_dict
            visible = (f"gpu_id={self.final_config_dict['gpu_id']!r}" if given
                       else f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}")
            raise RecboleGTCError(f"--nproc={self.final_config_dict['nproc']}: only {torch.cuda.device_count()} "
                                  f"GPU(s) visible ({visible}); one GPU per process, or --use_gpu=False")
        rank = local_rank + self.final_config_dict["offset"]
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", store=self._rendezvous(rank),
                                rank=rank, world_size=self.final_config_dict["world_size"])
        self.final_config_dict["device"] = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(local_rank)
        self.final_config_dict["single_spec"] = False
        if local_rank + self.final_config_dict["offset"] != 0:  # only global rank 0 logs (one run.log)
            self.final_config_dict["state"] = "error"
            self.final_config_dict["show_progress"] = False
            self.final_config_dict["verbose"] = False

    def _rendezvous(self, rank):
        """The TCP store every rank joins (RecBole's ``tcp://ip:port``), waiting at most
        ``peer_timeout`` seconds for all ``world_size`` processes instead of torch's silent 30
        minutes; rank 0 of a run spread over machines says what it waits for."""

        c = self.final_config_dict
        address, world_size, nproc = f"tcp://{c['ip']}:{c['port']}", c["world_size"], c["nproc"]
        timeout = c.get("peer_timeout") or PEER_TIMEOUT  # settings built without the runner have none
        if rank == 0 and world_size > nproc:
            print(f"waiting up to {timeout:g} s for the {world_size - nproc} process(es) of the other "
                  f"machines at {address}", file=sys.stderr, flush=True)
        try:
            return dist.TCPStore(c["ip"], c["port"], world_size, rank == 0, wait_for_workers=True,
                                 timeout=datetime.timedelta(seconds=timeout))
        except (RuntimeError, OSError) as err:  # torch's DistStoreError / DistNetworkError
            why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RecboleGTCError(
                f"--world_size={world_size}: not every process joined {address} within --peer_timeout="
                f"{timeout:g} s ({why}); start the other machines' commands with the same --ip, --port "
                "and --world_size, or lower --world_size") from None

    def _set_train_neg_sample_args(self):
        _one_line_errors(super()._set_train_neg_sample_args)

    def _set_eval_neg_sample_args(self, phase):
        _one_line_errors(super()._set_eval_neg_sample_args, phase)

    def _build_yaml_loader(self):
        """RecBole's loader (its float syntax), refusing a key given twice in one mapping: YAML
        forbids it, and PyYAML would silently keep the last value."""
        base = super()._build_yaml_loader()  # RecBole adds its float syntax to yaml.FullLoader
        if not issubclass(UniqueKeyLoader, base):
            raise RecboleGTCError(f"RecBole's YAML loader {base.__name__} is not yaml.FullLoader: "
                                  "this recbole-gtc needs RecBole 1.2.x")
        return UniqueKeyLoader

    def _load_config_files(self, file_list):
        """RecBole's reading, one file at a time, so that a problem names its file."""
        file_config_dict = {}
        for path in file_list or []:
            try:
                with open(path, "r", encoding="utf-8") as f:
                    loaded = yaml.load(f.read(), Loader=self.yaml_loader)
            except yaml.YAMLError as err:
                raise RecboleGTCError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
            except (OSError, UnicodeDecodeError) as err:
                raise RecboleGTCError(f"{path}: cannot be read ({err})") from None
            if loaded is None:
                continue
            if not isinstance(loaded, dict):
                raise RecboleGTCError(
                    f"{path}: must be a YAML mapping of key: value lines, got a {type(loaded).__name__}")
            file_config_dict.update(loaded)
        return file_config_dict

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        if "data_path" in self.external_config_dict:
            data_path = expand_path(self.external_config_dict["data_path"])
            self.external_config_dict["data_path"] = data_path
        else:
            data_path = default_data_path(dataset)
        self.internal_config_dict["data_path"] = data_path
        overall = os.path.join(PROPERTIES_DIR, "overall.yaml")
        if not os.path.isfile(overall):
            # Never fall back silently to RecBole's defaults (another seed, metric and protocol).
            raise RecboleGTCError(f"{overall}: the package's defaults are missing (reinstall recbole-gtc)")
        layers = [
            os.path.join(PROPERTIES_DIR, "overall.yaml"),
            os.path.join(PROPERTIES_DIR, "model", f"{model}.yaml"),
            os.path.join(data_path, dataset, f"{dataset}.yaml"),
        ]
        for i, path in enumerate(layers):
            if not os.path.isfile(path):
                continue
            try:
                layer = self._update_internal_config_dict(path)
            except yaml.YAMLError as err:
                raise RecboleGTCError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
            if i == 2 and layer:
                # RecBole prints dataset keys under "Dataset Hyper Parameters".
                self.parameters["Dataset"] += [k for k in layer if k not in self.parameters["Dataset"]]


def _one_line_errors(check, *args):
    """Run one of RecBole's config checks; its Python errors become one-line RecboleGTCErrors."""
    try:
        return check(*args)
    except RecboleGTCError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, NotImplementedError, RuntimeError, AssertionError) as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RecboleGTCError(f"configuration rejected by RecBole: {text}") from None


class UniqueKeyLoader(yaml.FullLoader):
    """RecBole's YAML loader (``yaml.FullLoader`` with its float syntax, inherited), raising a
    YAML error at the second occurrence of a key in a mapping. A module-level class: the
    configuration, loader included, is pickled into every checkpoint."""

    def construct_mapping(self, node, deep=False):
        first_line = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges may override
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: PyYAML's own error follows
                continue
            if seen is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice: first at line {seen}, again", key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(err):
    """``<problem> at line L, column C`` of a YAML error (one line)."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem
