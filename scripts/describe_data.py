"""Print Markdown tables describing the shipped datasets: features and encoding constants, base
rates per sensitive group, raw SPD and client sizes. docs/data.md pastes its output.

    .venv/bin/python scripts/describe_data.py      # data: the data directory of docs/data.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import OmegaConf

from fedsynth.data import DatasetSpec, TabularData, load_dataset, partition_clients

CONF_DIR = Path(__file__).resolve().parent.parent / "conf" / "dataset"
SHIPPED = ("law_school_race", "law_school_gender", "dutch_gender", "synthetic")


def positive_rate(data: TabularData, s_value: float) -> tuple[int, float]:
    """Size of the group s = s_value and its rate of y = +1."""
    in_group = data.s == s_value
    return int(in_group.sum()), float((data.y[in_group] > 0).double().mean())


def spd(data: TabularData) -> float:
    """Raw statistical parity difference of the labels, P(y=1|s=1) - P(y=1|s=0)."""
    return positive_rate(data, 1.0)[1] - positive_rate(data, 0.0)[1]


def describe(spec: DatasetSpec, data: TabularData, seed: int, alpha: float) -> list[str]:
    """The Markdown section for one dataset."""
    lines = [f"### `{spec.name}`", ""]
    if spec.kind == "table":
        lines += [
            f"File `{spec.file}` (sha256 `{spec.sha256}`), label `{spec.label.column}` == "
            f"`{spec.label.positive}` -> y = +1, sensitive `{spec.sensitive.columns[0]}` == "
            f"`{spec.sensitive.privileged}` -> s = 1. {len(data)} rows, "
            f"{data.num_features} features (n - 1), K = {spec.num_clients} clients.",
            "",
            "| feature | type | center | scale |",
            "|---|---|---|---|",
        ]
        for feature in spec.features:
            kind = feature.type + (f" (== {feature.positive})" if feature.type == "binary" else "")
            lines.append(f"| {feature.name} | {kind} | {feature.center:g} | {feature.scale:g} |")
    else:
        generator = spec.generator
        lines += [
            f"Generated (seed {generator.seed}): {len(data)} rows, {data.num_features} features, "
            f"class_separation {generator.class_separation}, rotation {generator.rotation}, "
            f"sensitive_strength {generator.sensitive_strength}, K = {spec.num_clients} clients.",
        ]
    lines += ["", "| group | n | P(y=1 given s) |", "|---|---|---|"]
    for s_value, label in ((1.0, "s = 1 (privileged)"), (0.0, "s = 0")):
        size, rate = positive_rate(data, s_value)
        lines.append(f"| {label} | {size} | {rate:.4f} |")
    lines += ["", f"Raw SPD = P(y=1|s=1) - P(y=1|s=0) = **{spd(data):+.4f}**.", ""]
    for scheme in ("iid", "dirichlet"):
        title = "IID (Table 1)" if scheme == "iid" else f"Dirichlet alpha = {alpha}"
        lines += [
            f"{title} clients, seed {seed}:",
            "",
            "| client | train | test | train n(s=1) | train n(s=0) | train SPD |",
            "|---|---|---|---|---|---|",
        ]
        clients = partition_clients(
            data, spec.num_clients, seed=seed, scheme=scheme, dirichlet_alpha=alpha
        )
        for client in clients:
            train = client.train
            sizes = (positive_rate(train, 1.0)[0], positive_rate(train, 0.0)[0])
            client_spd = f"{spd(train):+.4f}" if min(sizes) > 0 else "n/a"
            lines.append(
                f"| {client.client_id} | {len(train)} | {len(client.test)} | {sizes[0]} | "
                f"{sizes[1]} | {client_spd} |"
            )
        lines.append("")
    return lines


def main() -> None:
    """Print the description of every dataset named on the command line (default: all shipped)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="*", default=list(SHIPPED))
    parser.add_argument("--data-dir", default=None, help="default: the data-directory rule of docs/data.md")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration")
    args = parser.parse_args()
    for name in args.datasets:
        config = OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"{name}.yaml"), resolve=True)
        spec = DatasetSpec.from_config(config)
        data = load_dataset(spec, args.data_dir)
        print("\n".join(describe(spec, data, args.seed, args.alpha)))


if __name__ == "__main__":
    main()
