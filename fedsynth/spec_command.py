"""The ``fedsynth-spec`` command: a dataset spec for your own CSV file, in one command.

    fedsynth-spec data.csv --label income --positive ">50K" --sensitive sex --privileged Male
    fedsynth dataset=data                      # then run it (the spec's name: the file's stem)
    fedsynth-spec data.csv --label income --positive ">50K" --sensitive race sex   # k groups: every race × sex

It computes the encoding constants and category levels from the whole file
(:mod:`fedsynth.data.encoding`), checks that the file encodes with them, writes
``<user config folder>/dataset/NAME.yaml`` (``$FEDSYNTH_CONFIG_DIR``, default
``~/.config/fedsynth``, on Hydra's search path: no edit of the repository) and prints the command
that runs it. A relative CSV path is taken from the working directory; the spec records the
absolute path and the file's sha256.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

import yaml

from fedsynth.paths import user_config_dir


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line of ``fedsynth-spec``."""
    parser = argparse.ArgumentParser(prog="fedsynth-spec", description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="the CSV file (relative: to the working directory)")
    parser.add_argument("--label", required=True, metavar="COLUMN", help="the binary label column")
    parser.add_argument("--positive", required=True, metavar="VALUE", help="label value that means y = +1")
    parser.add_argument(
        "--sensitive", required=True, nargs="+", metavar="COLUMN",
        help="the sensitive column(s); without --privileged every value (combination) in the file is a group",
    )
    parser.add_argument("--privileged", metavar="VALUE", help="one column's value that means s = 1 (binary)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="COLUMN", help="columns that are no feature")
    parser.add_argument("--binary", nargs="+", default=[], metavar="COLUMN=VALUE", help="indicator features")
    parser.add_argument(
        "--categorical", nargs="+", default=[], metavar="COLUMN", help="numeric columns to one-hot encode (codes)"
    )
    parser.add_argument("--scaling", choices=("standard", "minmax"), default="standard", help="default: standard")
    parser.add_argument("--name", help="the spec's name, used as dataset=NAME (default: the file's stem)")
    parser.add_argument("--num-clients", type=int, default=2, help="clients of the in-process engine (default 2)")
    parser.add_argument("--force", action="store_true", help="replace an existing spec of that name")
    return parser.parse_args(argv)


def spec_name(path: Path) -> str:
    """A Hydra-friendly default name from a file name: ``My Data.csv`` -> ``my_data``."""
    return re.sub(r"[^a-z0-9_]+", "_", path.stem.lower()).strip("_") or "dataset"


def write_spec(args: argparse.Namespace) -> tuple[Path, str]:
    """Compute, check and write the spec; return its path and name. Raise ``ValueError`` (a
    :class:`~fedsynth.data.DataError` for the data) with a one-line message when it cannot."""
    from fedsynth.data import DatasetSpec, file_sha256, load_csv, read_csv_file
    from fedsynth.data.encoding import spec_text

    csv = args.csv.expanduser().resolve()
    if not csv.is_file():
        raise ValueError(f"{args.csv}: no such file (relative paths start from {Path.cwd()})")
    frame = read_csv_file(csv)
    binary = dict(item.split("=", 1) for item in args.binary if "=" in item)
    if len(binary) != len(args.binary):
        raise ValueError("--binary takes COLUMN=VALUE pairs")
    if args.privileged is not None and len(args.sensitive) != 1:
        raise ValueError("--privileged makes one column binary; give one --sensitive column, or drop --privileged")
    named = [args.label, *args.sensitive, *args.exclude, *binary, *args.categorical]
    unknown = [column for column in named if column not in frame.columns]
    if unknown:
        raise ValueError(f"{csv} has no column(s) {unknown}; its columns are {list(frame.columns)}")
    if args.num_clients < 1:
        raise ValueError(f"--num-clients must be at least 1, got {args.num_clients}")
    name = args.name or spec_name(csv)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ValueError(f"--name {name!r}: use letters, digits, '_', '-' and '.' only")
    out = user_config_dir() / "dataset"
    target = out / f"{name}.yaml"
    if target.exists() and not args.force:
        raise ValueError(f"{target} exists: choose another --name, or --force to replace it")
    text = spec_text(
        frame,
        name=name,
        file=str(csv),
        sha256=file_sha256(csv),
        num_clients=args.num_clients,
        label=(args.label, args.positive),
        sensitive=args.sensitive,
        privileged=args.privileged,
        exclude=args.exclude,
        binary=binary,
        scaling=args.scaling,
        categorical=args.categorical,
        command=shlex.join(["fedsynth-spec", *sys.argv[1:]]) if sys.argv[1:] else "fedsynth-spec",
    )
    load_csv(DatasetSpec.from_config(yaml.safe_load(text)), csv)  # the file encodes with the spec
    out.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target, name


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fedsynth-spec`` console script."""
    args = parse_arguments(argv)
    try:
        target, name = write_spec(args)
    except ValueError as error:
        print(f"fedsynth-spec: {error}", file=sys.stderr)
        return 2
    print(f"wrote {target}")
    print(f"run it: fedsynth dataset={name}        (Flower's simulation; add engine=inprocess for the in-process engine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
