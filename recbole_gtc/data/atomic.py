"""A cheap check that a dataset folder is in RecBole's atomic format, before RecBole reads it.

RecBole parses each atomic file's header as ``name:type`` columns and fails deep inside
with ``ValueError: not enough values to unpack`` when a column has no type, as in a raw
MMRec ``.inter`` (``userID itemID rating timestamp x_label``). :func:`check_dataset_folder`
reads only the header and the first lines of each file RecBole will load and turns every
such problem into one :class:`~recbole_gtc.utils.errors.RecboleGTCError` line naming the file,
pointing MMRec folders to ``python -m recbole_gtc.prepare mmrec``.
"""

import os

from recbole_gtc.utils.errors import RecboleGTCError

#: RecBole's column types (``recbole.utils.FeatureType``).
ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
#: The header of a raw MMRec interaction file.
MMREC_COLUMNS = ("userID", "itemID", "rating", "timestamp", "x_label")
#: Data lines whose field count is checked against the header (the rest is left to RecBole).
LINES_CHECKED = 100


def _import_hint(name):
    return f"convert an MMRec folder with: python -m recbole_gtc.prepare mmrec SRC --dataset {name}"


def atomic_files(config):
    """The atomic files RecBole will read for this config: ``[(path, required)]``."""
    folder, name = config["data_path"], config["dataset"]
    benchmark = config["benchmark_filename"]
    if benchmark:
        files = [(os.path.join(folder, f"{name}.{split}.inter"), True) for split in benchmark]
    else:
        files = [(os.path.join(folder, f"{name}.inter"), True)]
    files += [(os.path.join(folder, f"{name}.{kind}"), False) for kind in ("user", "item")]
    return files


def _header(path, separator, encoding):
    try:
        with open(path, "r", encoding=encoding) as f:
            head = f.readline()
            lines = [line for _, line in zip(range(LINES_CHECKED), f)]
    except UnicodeDecodeError:
        raise RecboleGTCError(f"{path}: not {encoding} text") from None
    if not head.strip():
        raise RecboleGTCError(f"{path}: empty file (a RecBole atomic file starts with a header such as "
                              f"'user_id:token item_id:token')")
    if head.startswith("\ufeff"):
        raise RecboleGTCError(f"{path}: starts with a byte-order mark (BOM); save it as UTF-8 without BOM")
    return head.rstrip("\r\n").split(separator), lines


def check_atomic_file(path, name, separator="\t", encoding="utf-8"):
    """Check one atomic file's header (``name:type`` columns) and its first lines' field counts.

    Returns:
        list of str: the field names of the header.
    """
    columns, lines = _header(path, separator, encoding)
    if all(":" not in c for c in columns):
        plain = [c.strip() for c in columns]
        if set(MMREC_COLUMNS) <= set(plain) or "x_label" in plain:
            raise RecboleGTCError(
                f"{path}: a raw MMRec interaction file (header {' '.join(plain)}), not RecBole atomic format; "
                + _import_hint(name)
            )
        raise RecboleGTCError(
            f"{path}: not RecBole atomic format: header columns have no ':type' (got {' '.join(plain)!r}, "
            f"expected e.g. 'user_id:token item_id:token'); write name:type headers, or "
            + _import_hint(name).replace("convert", "import")
        )
    fields = []
    for column in columns:
        field, _, ftype = column.partition(":")
        if not field or ftype.strip() not in ATOMIC_TYPES:
            raise RecboleGTCError(
                f"{path}: header column {column!r} is not name:type with type one of {', '.join(ATOMIC_TYPES)}"
            )
        fields.append(field)
    for number, line in enumerate(lines, start=2):
        line = line.rstrip("\r\n")
        if line and len(line.split(separator)) != len(columns):
            raise RecboleGTCError(
                f"{path}: line {number} has {len(line.split(separator))} fields but the header has {len(columns)} "
                f"(separator {separator!r})"
            )
    return fields


def check_dataset_folder(config):
    """Check the atomic files of ``config``'s dataset before RecBole reads them.

    Every interaction file named by ``benchmark_filename`` (or ``NAME.inter``) must exist,
    have a ``name:type`` header holding the user and item id fields, and lines with as
    many fields as the header; ``NAME.user`` / ``NAME.item`` are checked when present.

    Raises:
        RecboleGTCError: one line naming the file and the problem.
    """
    name = config["dataset"]
    separator = config["field_separator"] or "\t"
    encoding = config["encoding"] or "utf-8"
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    folder = config["data_path"]
    for path, required in atomic_files(config):
        if not os.path.isfile(path):
            if required:
                raw = os.path.join(folder, f"{name}.inter")
                hint = ""
                if config["benchmark_filename"] and os.path.isfile(raw):
                    hint = f" ({name}.inter is there: if it is a raw MMRec file, {_import_hint(name)})"
                raise RecboleGTCError(f"{path}: interaction file not found{hint}")
            continue
        fields = check_atomic_file(path, name, separator, encoding)
        if path.endswith(".inter"):
            missing = [f for f in (uid, iid) if f not in fields]
            if missing:
                raise RecboleGTCError(
                    f"{path}: header lacks the id field(s) {', '.join(missing)} "
                    f"(USER_ID_FIELD={uid}, ITEM_ID_FIELD={iid})"
                )
