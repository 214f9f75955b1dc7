"""Model specs and seeds of a comparison.

A *spec* names a model and, optionally, a variant of it: ``GTC``,
``GTC[use_tc=False]``, ``GTC[use_diffusion=False,use_gate=False]``. The bracketed
``key=value`` pairs are applied like command-line overrides (after the user's own,
so the variant always means what its label says), and the spec text is the label
under which the model appears in every table.
"""

import ast
from dataclasses import dataclass, field

from recbole_gtc.utils.errors import RecboleGTCError


@dataclass(frozen=True)
class Spec:
    """One row of a comparison.

    Attributes:
        label (str): as written by the user (``"GTC[use_tc=False]"``).
        model (str): the model class name (``"GTC"``).
        overrides (tuple): ``(key, value)`` string pairs from the brackets, in order.
    """

    label: str
    model: str
    overrides: tuple = field(default_factory=tuple)

    def cmd_args(self):
        """The overrides as ``--key=value`` strings."""
        return [f"--{key}={value}" for key, value in self.overrides]

    def config_dict(self):
        """The overrides as typed values, read as RecBole reads command-line values
        (Python literals; ``true``/``false`` in any case; anything else a string)."""
        return {key: _literal(value) for key, value in self.overrides}


def _literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False}.get(text.lower(), text)


def parse_specs(text):
    """``"GTC,GTC[use_tc=False],LightGCN"`` -> list of :class:`Spec`.

    Commas inside brackets separate a variant's overrides, not models.

    Raises:
        RecboleGTCError: unbalanced brackets, an empty name, a pair without ``=``, or the
            same label twice.
    """
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise RecboleGTCError(f"--model: unbalanced ']' in '{text}'")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise RecboleGTCError(f"--model: unbalanced '[' in '{text}'")
    parts.append(current)
    specs = [_parse_one(part.strip(), text) for part in parts if part.strip()]
    if not specs:
        raise RecboleGTCError("--model: no model named")
    labels = [spec.label for spec in specs]
    for label in labels:
        if labels.count(label) > 1:
            raise RecboleGTCError(f"--model: '{label}' is named twice")
    return specs


def _parse_one(part, text):
    if "[" not in part:
        if "]" in part or "=" in part:
            raise RecboleGTCError(f"--model: cannot read '{part}' in '{text}' (variants are written MODEL[key=value,...])")
        return Spec(part, part)
    name, _, rest = part.partition("[")
    name = name.strip()
    if not name or not rest.endswith("]"):
        raise RecboleGTCError(f"--model: cannot read '{part}' (variants are written MODEL[key=value,...])")
    pairs = []
    for item in rest[:-1].split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise RecboleGTCError(f"--model: '{item}' in '{part}' is not key=value")
        pairs.append((key.strip(), value.strip()))
    if not pairs:
        raise RecboleGTCError(f"--model: '{part}' has empty brackets")
    label = f"{name}[{','.join(f'{k}={v}' for k, v in pairs)}]"
    return Spec(label, name, tuple(pairs))


#: Most seeds a count may ask for (``--seeds=N``); longer studies list their seeds.
MAX_SEED_COUNT = 50


def parse_seeds(text, base_seed):
    """``--seeds``: a count (``5``: ``base_seed`` .. ``base_seed + 4``; at most
    :data:`MAX_SEED_COUNT`) or a list (``1,2,3``; ``999,`` is the one seed 999).

    Returns:
        list of int, without repeats.
    """
    text = str(text).strip()
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            count = int(text)
            if count < 1:
                raise RecboleGTCError(f"--seeds={text}: must be at least 1")
            if count > MAX_SEED_COUNT:
                # Almost surely one seed meant as a count (--seeds=999): refuse, never start 999 runs.
                raise RecboleGTCError(f"--seeds={text}: a count above {MAX_SEED_COUNT}; for that one seed write "
                                      f"--seeds={text}, (a list) or --seed={text} --seeds=1")
            seeds = [int(base_seed) + i for i in range(count)]
    except ValueError:
        raise RecboleGTCError(f"--seeds={text}: give a count (5) or a comma-separated list of seeds (1,2,3)") from None
    if not seeds:
        raise RecboleGTCError(f"--seeds={text}: no seed given")
    if len(set(seeds)) != len(seeds):
        raise RecboleGTCError(f"--seeds={text}: a seed is repeated")
    return seeds
