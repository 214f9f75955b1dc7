"""What the speed and memory benchmarks share: the machine's description and the report files."""

import json
import os
import platform
import shlex
import statistics
import sys
import time
import warnings

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def median(values):
    return statistics.median(values) if values else float("nan")


def log(msg):
    """Progress on stderr, so that stdout holds the report only."""
    print(msg, file=sys.stderr, flush=True)


def quiet_library_warnings():
    warnings.filterwarnings("ignore", category=FutureWarning)  # pandas/torch notices inside RecBole
    warnings.filterwarnings("ignore", category=UserWarning)


def malloc_settings():
    """glibc's malloc variables of this process: they change a GTC step's time
    (docs/performance.md, "glibc's malloc settings"), so a report names them."""
    names = sorted(k for k in os.environ if k.startswith("MALLOC_") or k == "GLIBC_TUNABLES")
    return ", ".join(f"{k}={os.environ[k]}" for k in names) or "glibc's defaults"


def machine():
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        model = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("model name")), model)
        flags = next((l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags")), [])
    except OSError:
        flags = []
    wanted = [f for f in flags if f.startswith(("avx512f", "avx512_bf16", "amx"))]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": model, "cores": os.cpu_count(), "flags": wanted, "gpu": gpu,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "malloc": malloc_settings()}


def start_report(module, argv):
    """The report's date, machine and command, and its first Markdown line."""
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
              "command": f"python -m {module} " + shlex.join(argv if argv is not None else sys.argv[1:])}
    m = report["machine"]
    first = (f"Benchmark {report['date']}; {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads, "
             f"GPU: {m['gpu'] or 'none'}; malloc: {m['malloc']}; command: `{report['command']}`")
    return report, [first]


def finish_report(report, md, out, name):
    """Print the Markdown; with ``out``, write it and the JSON report as ``out/name.{md,json}``."""
    text = "\n".join(md)
    print(text)
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, f"{name}.md"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(out, f"{name}.json"), "w") as f:
            json.dump(report, f, indent=1)
    return 0
