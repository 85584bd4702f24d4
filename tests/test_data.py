"""Tests of the data layer: specs, encoding, real-data sizes, partitions, bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

import fedsynth.data.partition as partition_module
import fedsynth.data.tables as tables_module
from fedsynth.data import (
    DataError,
    DatasetSpec,
    TabularData,
    encoded_feature_names,
    file_sha256,
    generate_synthetic,
    load_csv,
    load_dataset,
    load_partition,
    partition_clients,
    read_csv_file,
    resolve_data_file,
    split_train_test,
)

CONF_DIR = Path(__file__).resolve().parent.parent / "conf" / "dataset"


def shipped_config(name: str) -> dict:
    """The plain mapping of conf/dataset/<name>.yaml, as the CLI passes it."""
    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"{name}.yaml"), resolve=True)


def shipped_spec(name: str) -> DatasetSpec:
    """The spec of conf/dataset/<name>.yaml."""
    return DatasetSpec.from_config(shipped_config(name))


def raw_spd(data: TabularData) -> float:
    """P(y=1|s=1) - P(y=1|s=0) of the labels."""
    positive = data.y > 0
    return float(positive[data.s == 1].double().mean() - positive[data.s == 0].double().mean())


def table_spec(path: Path, **overrides) -> DatasetSpec:
    """A small table spec for tiny test CSVs with columns f1, f2, s, y."""
    config = {
        "name": "tiny",
        "kind": "table",
        "file": str(path),
        "num_clients": 2,
        "label": {"column": "y", "positive": 1},
        "sensitive": {"column": "s", "privileged": "a"},
        "features": [
            {"name": "f1", "type": "numeric", "center": 1.0, "scale": 2.0},
            {"name": "f2", "type": "numeric"},
        ],
    }
    config.update(overrides)
    return DatasetSpec.from_config(config)


def write_csv(path: Path, text: str) -> Path:
    """Write a tiny CSV and return its path."""
    path.write_text(text)
    return path


GOOD_CSV = "f1,f2,s,y\n1,2,a,1\n3,4,b,0\n5,6,a,0\n7,8,b,1\n"


def indexed_table(num_rows: int, seed: int = 0) -> TabularData:
    """A table whose only feature is the row number, with random s and y, to track rows."""
    rng = np.random.default_rng(seed)
    return TabularData(
        x=torch.arange(num_rows, dtype=torch.float64).unsqueeze(1),
        s=torch.from_numpy(rng.integers(0, 2, num_rows).astype(np.float64)),
        y=torch.from_numpy(rng.choice([-1.0, 1.0], num_rows)),
        feature_names=("row",),
    )


def row_ids(data: TabularData) -> list[int]:
    """Row numbers of an :func:`indexed_table` subset, in order."""
    return data.x[:, 0].long().tolist()


# --- real data -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "clients", "train", "test", "spd"),
    [
        ("law_school_race", 2, 8319, 2080, 0.1983),
        ("law_school_gender", 2, 8319, 2080, 0.0211),
        ("dutch_gender", 4, 12084, 3021, 0.2985),
    ],
)
def test_real_datasets_match_table_1(data_dir, name, clients, train, test, spd):
    spec = shipped_spec(name)
    data = load_dataset(spec, data_dir)
    assert spec.num_clients == clients
    assert data.num_features == 10
    assert spec.label.column not in data.feature_names
    assert spec.sensitive.columns[0] not in data.feature_names
    assert data.x.dtype == data.s.dtype == data.y.dtype == torch.float64
    assert set(data.s.unique().tolist()) == {0.0, 1.0}
    assert set(data.y.unique().tolist()) == {-1.0, 1.0}
    assert raw_spd(data) == pytest.approx(spd, abs=5e-5)
    # The written-down constants standardize the public file.
    assert data.x.mean(0).abs().max() < 1e-3
    assert (data.x.std(0) - 1).abs().max() < 1e-3
    for client in partition_clients(data, clients, seed=0):
        assert (len(client.train), len(client.test)) == (train, test)


def test_dutch_minmax_variant_scales_the_same_rows_into_the_unit_interval(data_dir):
    """FAIR-FATE's Dutch preprocessing: each code min-max scaled; rows, s and y as dutch_gender."""
    standard = load_dataset(shipped_spec("dutch_gender"), data_dir)
    minmax = load_dataset(shipped_spec("dutch_gender_minmax"), data_dir)
    assert minmax.feature_names == standard.feature_names
    assert torch.equal(minmax.s, standard.s) and torch.equal(minmax.y, standard.y)
    assert torch.allclose(minmax.x.min(0).values, torch.zeros(10, dtype=torch.float64))
    assert torch.allclose(minmax.x.max(0).values, torch.ones(10, dtype=torch.float64))
    # An affine map per column: the same rows, rescaled.
    assert torch.allclose(torch.corrcoef(torch.cat([minmax.x, standard.x], 1).T)[:10, 10:].diagonal(), torch.ones(10, dtype=torch.float64))


def test_law_school_settings_swap_race_and_male(data_dir):
    race = load_dataset(shipped_spec("law_school_race"), data_dir)
    gender = load_dataset(shipped_spec("law_school_gender"), data_dir)
    assert "male" in race.feature_names and "race" not in race.feature_names
    assert "race" in gender.feature_names and "male" not in gender.feature_names
    male_column = race.x[:, race.feature_names.index("male")]
    assert torch.equal(male_column > 0, gender.s == 1)
    race_column = gender.x[:, gender.feature_names.index("race")]
    assert torch.equal(race_column > 0, race.s == 1)


def test_a_row_encodes_identically_on_every_node(data_dir, tmp_path):
    spec = shipped_spec("law_school_race")
    frame = pd.read_csv(data_dir / spec.file)
    full = load_dataset(spec, data_dir)
    # Two nodes hold overlapping rows, one with its rows reversed and its columns reordered.
    node_a = frame.iloc[0:100]
    node_b = frame.iloc[50:150].iloc[::-1][list(reversed(frame.columns))]
    node_a.to_csv(tmp_path / "a.csv", index=False)
    node_b.to_csv(tmp_path / "b.csv", index=False)
    encoded_a = load_csv(spec, tmp_path / "a.csv")
    encoded_b = load_csv(spec, tmp_path / "b.csv")
    assert torch.equal(encoded_a.x[50:100], encoded_b.x.flip(0)[:50])  # rows 50..99 on both
    assert torch.equal(encoded_a.x, full.x[0:100])
    assert torch.equal(encoded_b.s.flip(0), full.s[50:150])
    # The constants are the spec's: lsat of row 0 is (44 - center) / scale.
    lsat = spec.features[[f.name for f in spec.features].index("lsat")]
    assert (
        encoded_a.x[0, encoded_a.feature_names.index("lsat")] == (44.0 - lsat.center) / lsat.scale
    )
    assert shipped_spec("law_school_race") == spec


def test_load_partition_reads_the_file_once(data_dir, monkeypatch, tmp_path):
    spec = shipped_spec("law_school_race")
    reads = []
    read_csv = pd.read_csv

    def counting_read(path, *args, **kwargs):
        reads.append(Path(path).name)
        return read_csv(path, *args, **kwargs)

    # a data folder no earlier test used, so the first call must read the file
    (tmp_path / spec.file).symlink_to(Path(data_dir) / spec.file)
    monkeypatch.setattr(pd, "read_csv", counting_read)
    clients = [load_partition(spec, k, seed=3, data_dir=tmp_path) for k in range(2)]
    assert reads == [spec.file]
    expected = partition_clients(load_dataset(spec, data_dir), 2, seed=3)
    for client, reference in zip(clients, expected, strict=True):
        assert torch.equal(client.train.x, reference.train.x)
        assert torch.equal(client.test.y, reference.test.y)
    with pytest.raises(DataError, match="client_id"):
        load_partition(spec, 2, seed=3, data_dir=data_dir)


def test_a_client_encodes_only_its_own_rows(tmp_path):
    """The split's shuffle needs every row's (s, y); the features of the other clients' rows are
    never encoded, so a bad value there is not this client's error (the command's checks, which
    load the whole file, report it before a run starts)."""
    rows = [f"{k},{k + 1},{'a' if k % 2 else 'b'},{k % 3 % 2}" for k in range(40)]
    good = write_csv(tmp_path / "good.csv", "f1,f2,s,y\n" + "\n".join(rows) + "\n")
    spec = table_spec(good, num_clients=4)
    parts = [load_partition(spec, k, seed=1) for k in range(4)]
    expected = partition_clients(load_dataset(spec), 4, seed=1)
    for part, reference in zip(parts, expected, strict=True):
        assert torch.equal(part.train.x, reference.train.x) and torch.equal(part.test.s, reference.test.s)
    # f1 = k in data row k + 1, encoded as (k - 1) / 2: the rows client 0 holds, and one it does not
    held = {round(float(v) * 2 + 1) for part in (parts[0].train, parts[0].test) for v in part.x[:, 0]}
    victim = min(set(range(40)) - held)
    bad_rows = list(rows)
    bad_rows[victim] = bad_rows[victim].replace(f"{victim},{victim + 1}", f"{victim},oops", 1)
    bad = write_csv(tmp_path / "bad.csv", "f1,f2,s,y\n" + "\n".join(bad_rows) + "\n")
    bad_spec = table_spec(bad, num_clients=4)
    with pytest.raises(DataError, match=f"non-numeric value 'oops' in 1 row\\(s\\), first at data row {victim + 1}"):
        load_dataset(bad_spec)
    mine = load_partition(bad_spec, 0, seed=1)
    assert torch.equal(mine.train.x, parts[0].train.x) and torch.equal(mine.test.x, parts[0].test.x)


# --- sha256 and data directory ---------------------------------------------------------------


def test_sha256_is_checked(tmp_path):
    path = write_csv(tmp_path / "t.csv", GOOD_CSV)
    actual = file_sha256(path)
    assert len(load_dataset(table_spec(path, sha256=actual))) == 4
    wrong = "0" * 64
    with pytest.raises(DataError) as error:
        load_dataset(table_spec(path, sha256=wrong))
    assert (
        str(path) in str(error.value) and wrong in str(error.value) and actual in str(error.value)
    )


def test_relative_file_needs_a_data_dir(tmp_path, monkeypatch):
    write_csv(tmp_path / "t.csv", GOOD_CSV)
    spec = table_spec(Path("t.csv"))
    monkeypatch.delenv("FEDSYNTH_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="FEDSYNTH_DATA_DIR"):
        load_dataset(spec)
    assert len(load_dataset(spec, tmp_path)) == 4
    monkeypatch.setenv("FEDSYNTH_DATA_DIR", str(tmp_path))
    assert len(load_dataset(spec)) == 4


def test_relative_file_is_read_from_the_working_directory_first(tmp_path, monkeypatch):
    """The data-directory rule (fedsynth.paths): a relative file in the working directory wins,
    else the data directory (data_dir, $FEDSYNTH_DATA_DIR, ../shared/data beside the checkout)."""
    from fedsynth.paths import CHECKOUT_DATA_DIR, data_directory

    work, data = tmp_path / "work", tmp_path / "data"
    work.mkdir(), data.mkdir()
    write_csv(work / "t.csv", GOOD_CSV)
    write_csv(data / "t.csv", GOOD_CSV + "5,6,b,1\n")
    spec = table_spec(Path("t.csv"))
    monkeypatch.setenv("FEDSYNTH_DATA_DIR", str(data))
    monkeypatch.chdir(work)
    assert resolve_data_file(spec) == work / "t.csv" and len(load_dataset(spec)) == 4
    monkeypatch.chdir(tmp_path)
    assert resolve_data_file(spec) == data / "t.csv" and len(load_dataset(spec)) == 5
    assert data_directory(str(work)) == work and data_directory() == data
    monkeypatch.delenv("FEDSYNTH_DATA_DIR")
    assert data_directory() == (CHECKOUT_DATA_DIR if CHECKOUT_DATA_DIR.is_dir() else None)


# --- encoding of tiny files ------------------------------------------------------------------


def test_tiny_csv_encoding(tmp_path):
    data = load_csv(table_spec(tmp_path), write_csv(tmp_path / "t.csv", GOOD_CSV))
    assert data.feature_names == ("f1", "f2")
    assert data.x.tolist() == [[0.0, 2.0], [1.0, 4.0], [2.0, 6.0], [3.0, 8.0]]
    assert data.s.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert data.y.tolist() == [1.0, -1.0, -1.0, 1.0]


def test_binary_and_categorical_features(tmp_path):
    path = write_csv(tmp_path / "t.csv", "c,b,s,y\nred,yes,a,1\nblue,no,b,0\nred,no,a,0\n")
    features = [
        {"name": "c", "type": "categorical", "levels": ["blue", "green", "red"]},
        {"name": "b", "type": "binary", "positive": "yes", "center": 0.5, "scale": 0.5},
    ]
    data = load_csv(table_spec(path, features=features), path)
    assert data.feature_names == ("c=blue", "c=green", "c=red", "b")
    assert data.x.tolist() == [[0, 0, 1, 1], [1, 0, 0, -1], [0, 0, 1, -1]]
    features[0]["levels"] = ["blue", "green"]
    with pytest.raises(DataError, match="'c'.*red"):
        load_csv(table_spec(path, features=features), path)


def test_csv_config_uses_every_other_column_unscaled(tmp_path):
    path = write_csv(tmp_path / "t.csv", GOOD_CSV)
    config = shipped_config("csv")
    with pytest.raises(DataError, match="dataset.file"):
        DatasetSpec.from_config(config)
    config.update(file=str(path), label={"column": "y", "positive": 1})
    config.update(sensitive={"column": "s", "privileged": "a"})
    data = load_dataset(DatasetSpec.from_config(config))
    assert data.feature_names == ("f1", "f2")
    assert data.x[:, 0].tolist() == [1.0, 3.0, 5.0, 7.0]


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("f1,f2,s,y\n", "no data rows"),
        ("f1,s,y\n1,a,1\n2,b,0\n", r"\['f2'\] not found"),
        ("f1,f2,s,z\n1,2,a,1\n2,3,b,0\n", r"\['y'\] not found"),
        ("f1,f2,s,y\n1,2,a,1\n2,3,b,0\n3,4,a,2\n", "label column 'y' must have exactly two"),
        ("f1,f2,s,y\n1,2,a,1\n2,3,b,1\n", "label column 'y' must have exactly two"),
        ("f1,f2,s,y\n1,2,a,0\n2,3,b,2\n", "label column 'y' never equals .* positive value 1"),
        ("f1,f2,s,y\n1,2,a,1\n2,3,,0\n", "column 's' has missing values in 1 row"),
        ("f1,f2,s,y\n1,2,a,1\n2,3,b,0\n3,4,c,1\n", "sensitive column 's' must have exactly two"),
        (
            "f1,f2,s,y\n1,2,c,1\n2,3,b,0\n",
            "sensitive column 's' never equals .* privileged value 'a'",
        ),
        ("f1,f2,s,y\n1,2,a,1\n,3,b,0\n", "column 'f1' has missing values in 1 row.*data row 2"),
        ("f1,f2,s,y\n1,2,a,1\n2,x7,b,0\n", "numeric column 'f2' has non-numeric value 'x7'"),
        ("f1,f2,s,y\n1,2,a,1\n2,inf,b,0\n", "column 'f2' has infinite values"),
    ],
)
def test_bad_files_raise_data_error(tmp_path, text, message):
    path = write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(DataError, match=message) as error:
        load_csv(table_spec(path), path)
    assert str(path) in str(error.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(DataError, match="not found.*nowhere.csv.*check dataset.file and FEDSYNTH_DATA_DIR"):
        load_dataset(table_spec(path))  # an absolute path (issue 24: the hint was missing)
    with pytest.raises(DataError, match="not found.*nowhere.csv"):
        load_csv(table_spec(path), path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"labell": {}}, "unknown key.*labell"),
        ({"kind": "parquet"}, "kind must be one of"),
        ({"num_clients": 0}, "num_clients must be an integer >= 1"),
        ({"label": {"column": "s", "positive": 1}}, "both 's'"),
        ({"sensitive": None}, "sensitive is missing"),
        ({"features": [{"name": "f1", "scale": 0}]}, "scale must be > 0"),
        ({"features": [{"name": "f1", "type": "text"}]}, "type must be one of"),
        ({"features": [{"name": "y"}]}, "label or sensitive column"),
        ({"features": [{"name": "f1"}, {"name": "f1"}]}, "listed twice"),
        ({"sha256": "abc"}, "64 hex digits"),
        ({"generator": {"seed": 1}}, "only used by kind: synthetic"),
        ({"sensitive": {"column": "s", "privileged": "a", "groups": ["a", "b"]}}, "either privileged .* or groups"),
        ({"sensitive": {"column": "s", "groups": ["a"]}}, "at least 2 groups"),
        ({"sensitive": {"column": "s", "groups": ["a", "a"]}}, "a group twice"),
        ({"sensitive": {"column": ["s", "f2"], "groups": [["a", 1], "b"]}}, r"groups\[1\] must give one value per column"),
        ({"sensitive": {"column": ["s", "s"], "groups": [["a", "a"], ["b", "b"]]}}, "lists a column twice"),
        ({"sensitive": {"column": ["s", "y"], "groups": [["a", 1], ["b", 1]]}}, "both 'y'"),
    ],
)
def test_bad_specs_raise_data_error(tmp_path, overrides, message):
    with pytest.raises(DataError, match=message):
        table_spec(tmp_path / "t.csv", **overrides)


def test_bad_partition_arguments():
    data = indexed_table(20)
    with pytest.raises(DataError, match="unknown partition scheme 'random'"):
        partition_clients(data, 2, seed=0, scheme="random")
    for fraction in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(DataError, match="test_fraction"):
            partition_clients(data, 2, seed=0, test_fraction=fraction)
        with pytest.raises(DataError, match="test_fraction"):
            split_train_test(data, seed=0, test_fraction=fraction)
    with pytest.raises(DataError, match="dirichlet_alpha"):
        partition_clients(data, 2, seed=0, scheme="dirichlet", dirichlet_alpha=0.0)
    with pytest.raises(DataError, match="seed"):
        partition_clients(data, 2, seed=-1)
    with pytest.raises(DataError, match="21 clients requested but the dataset has only 20 rows"):
        partition_clients(data, 21, seed=0)
    # 20 rows over 10 clients: 2 rows each, round(0.2 * 2) = 0 test rows.
    with pytest.raises(DataError, match="client 0: 2 row.*0 test"):
        partition_clients(data, 10, seed=0)


def test_dirichlet_client_without_rows_is_an_error():
    with pytest.raises(DataError, match="receives no rows"):
        partition_clients(indexed_table(40), 10, seed=0, scheme="dirichlet", dirichlet_alpha=0.01)


# --- partitions ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["iid", "dirichlet"])
def test_partitions_are_seeded(scheme):
    data = indexed_table(1000)

    def rows(seed):
        clients = partition_clients(data, 3, seed=seed, scheme=scheme)
        return [(row_ids(c.train), row_ids(c.test)) for c in clients]

    assert rows(7) == rows(7)
    assert rows(7) != rows(8)


def test_iid_clients_are_disjoint_equal_and_drop_the_remainder():
    data = indexed_table(1003)
    clients = partition_clients(data, 4, seed=1)
    ids = [i for c in clients for i in row_ids(c.train) + row_ids(c.test)]
    assert len(ids) == len(set(ids)) == 1000
    assert {(len(c.train), len(c.test)) for c in clients} == {(200, 50)}
    assert [c.client_id for c in clients] == [0, 1, 2, 3]


def test_dirichlet_covers_every_row_once_and_keeps_groups():
    data = indexed_table(2000)
    clients = partition_clients(data, 5, seed=2, scheme="dirichlet", dirichlet_alpha=0.5)
    ids = sorted(i for c in clients for i in row_ids(c.train) + row_ids(c.test))
    assert ids == list(range(2000))
    sizes = [len(c.train) + len(c.test) for c in clients]
    assert len(set(sizes)) > 1  # non-IID: unequal clients
    for client in clients:
        held = torch.tensor(row_ids(client.train) + row_ids(client.test))
        assert torch.equal(torch.cat([client.train.s, client.test.s]), data.s[held])
        assert torch.equal(torch.cat([client.train.y, client.test.y]), data.y[held])
        # A node holding exactly these rows (in file order) gets the same split.
        own = split_train_test(data.subset(held.sort().values), seed=2, client_id=client.client_id)
        assert torch.equal(own.train.x, client.train.x)


def test_split_train_test_sizes():
    part = split_train_test(indexed_table(10399), seed=0, client_id=1)
    assert (len(part.train), len(part.test), part.client_id) == (8319, 2080, 1)
    assert not set(row_ids(part.train)) & set(row_ids(part.test))


# --- synthetic -------------------------------------------------------------------------------


def test_synthetic_is_biased_deterministic_and_fileless(monkeypatch):
    monkeypatch.delenv("FEDSYNTH_DATA_DIR", raising=False)
    spec = shipped_spec("synthetic")
    data = load_dataset(spec)
    assert len(data) >= 2000 and data.num_features == 5 and 2 <= spec.num_clients <= 3
    assert set(data.y.unique().tolist()) == {-1.0, 1.0}
    assert set(data.s.unique().tolist()) == {0.0, 1.0}
    assert abs(raw_spd(data)) > 0.1
    # A plain least-squares classifier on the non-sensitive features is unfair too.
    design = torch.cat([data.x, torch.ones(len(data), 1, dtype=torch.float64)], dim=1)
    weights = torch.linalg.lstsq(design, data.y.unsqueeze(1)).solution
    predicted = TabularData(
        data.x, data.s, torch.sign(design @ weights).squeeze(1), data.feature_names
    )
    assert abs(raw_spd(predicted)) > 0.1
    again = load_dataset(shipped_spec("synthetic"))
    assert torch.equal(again.x, data.x) and torch.equal(again.s, data.s)
    other = generate_synthetic(dataclasses.replace(spec.generator, seed=spec.generator.seed + 1))
    assert not torch.equal(other.x, data.x)


# --- issue 24's data-reader findings ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        # every row one field wider than the header: pandas took the first column as the index and
        # shifted every column by one, silently (accuracy 0.5625 instead of 0.5000 in the issue)
        ("f1,f2,s,y\n1,2,a,1,\n3,4,b,0,\n5,6,a,0,\n7,8,b,1,\n", 2, "5 fields but the header names 4 columns.*trailing comma"),
        ("f1,f2,s,y\n0,1,2,a,1\n1,3,4,b,0\n2,5,6,a,0\n3,7,8,b,1\n", 2, "5 fields.*unnamed column such as a row id"),
        ("f1,f2,s,y\n1,2,a,1\n3,4,b,0\n5,6,a\n7,8,b,1\n", 4, "3 fields but the header names 4 columns.*fill in the missing"),
        ("f1,f2,s,y\n1,2,a,1\n\n3,4,b,0\n5,6,a,0,9\n", 5, "5 fields"),  # a blank line is skipped, and counted
    ],
)
def test_a_row_of_another_width_than_the_header_is_rejected_naming_the_line(tmp_path, text, line, message):
    path = write_csv(tmp_path / "ragged.csv", text)
    for read in (lambda: load_csv(table_spec(path), path), lambda: load_dataset(table_spec(path))):
        with pytest.raises(DataError, match=f"ragged.csv: line {line} has {message}") as error:
            read()
        assert "\n" not in str(error.value)


def test_a_byte_order_mark_is_stripped_on_every_read(tmp_path):
    """A UTF-8 BOM before the label column, ``features: null``: the server's header read (the
    width it expects) and the clients' read agree on the feature columns (the server kept
    ``\ufeffy`` as a feature and rejected every honest reply)."""
    path = tmp_path / "bom.csv"
    path.write_text("y,s,f1,f2\n1,a,1,2\n0,b,3,4\n0,a,5,6\n1,b,7,8\n", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    spec = table_spec(path, features=None)
    assert encoded_feature_names(spec) == ("f1", "f2")
    assert load_csv(spec, path).feature_names == ("f1", "f2") == load_dataset(spec).feature_names
    assert list(read_csv_file(path).columns) == ["y", "s", "f1", "f2"]


def test_a_label_with_three_values_is_refused_with_the_fix(tmp_path):
    """conf/dataset/csv.yaml said the label's other values mean y = −1; the label and sensitive
    columns must have exactly two values (a third is more often a wrong column or a stray spelling
    than a one-against-rest split), and the message says how to make that split."""
    path = write_csv(tmp_path / "three.csv", "f1,f2,s,y\n1,2,a,1\n2,3,b,0\n3,4,a,2\n")
    with pytest.raises(DataError, match=(
        "label column 'y' must have exactly two distinct values, found 3: \\[1, 0, 2\\]; check dataset.label.column, "
        "or add a column with two values \\(e.g. 1 where y is 1, else 0\\) and name it in dataset.label.column"
    )):
        load_csv(table_spec(path), path)
    assert "all others" not in (CONF_DIR / "csv.yaml").read_text()


def test_a_file_with_too_many_columns_fails_on_its_header(tmp_path, monkeypatch):
    """100,000 columns failed after 112 s (or showed nothing for 600 s): the header's width is
    checked before any row is parsed, on the clients' read and on the server's header read."""
    names = ["y", "s"] + [f"f{j}" for j in range(tables_module.MAX_COLUMNS)]
    path = write_csv(tmp_path / "wide.csv", ",".join(names) + "\n" + ",".join(["1", "a"] + ["0"] * (len(names) - 2)) + "\n")
    monkeypatch.setattr(tables_module.pd, "read_csv", lambda *args, **kwargs: pytest.fail("the rows were parsed"))
    spec = table_spec(path, features=None)
    for read in (lambda: load_csv(spec, path), lambda: encoded_feature_names(spec)):
        with pytest.raises(DataError, match=f"wide.csv: the header has {len(names)} columns, more than fedsynth reads"):
            read()


GROUPS_CSV = "f1,f2,s,t,y\n1,2,a,u,1\n3,4,b,u,0\n5,6,c,v,0\n7,8,b,v,1\n9,1,a,v,1\n"


def test_a_sensitive_attribute_with_k_groups_encodes_each_row_as_its_group_index(tmp_path):
    """``sensitive: {column, groups}``: s is the index of the row's value in ``groups`` (any order),
    the table knows k; the design matrix carries k − 1 group indicators (binary: the column s)."""
    path = write_csv(tmp_path / "g.csv", GROUPS_CSV)
    spec = table_spec(path, sensitive={"column": "s", "groups": ["b", "a", "c"]})
    assert spec.num_groups == 3 and spec.sensitive.columns == ("s",)
    data = load_csv(spec, path)
    assert data.s.tolist() == [1.0, 0.0, 2.0, 0.0, 1.0] and data.num_groups == 3
    assert data.a[:, 2:].tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
    assert data.subset(torch.tensor([0, 1])).num_groups == 3
    binary_path = write_csv(tmp_path / "b.csv", GOOD_CSV)
    binary = load_csv(table_spec(binary_path), binary_path)
    assert binary.num_groups == 2 and torch.equal(binary.a[:, 2], binary.s)


def test_several_sensitive_columns_make_their_combinations_the_groups(tmp_path):
    path = write_csv(tmp_path / "g.csv", GROUPS_CSV)
    groups = [["a", "u"], ["a", "v"], ["b", "u"], ["b", "v"], ["c", "v"]]
    spec = table_spec(path, sensitive={"column": ["s", "t"], "groups": groups})
    data = load_csv(spec, path)
    assert data.s.tolist() == [0.0, 2.0, 4.0, 3.0, 1.0] and data.num_groups == 5
    assert "t" not in encoded_feature_names(table_spec(path, features=None, sensitive={"column": ["s", "t"], "groups": groups}))
    with pytest.raises(DataError, match=r"have values \['c', 'v'\] in 1 row\(s\), first at data row 3 that are none of"):
        load_csv(table_spec(path, sensitive={"column": ["s", "t"], "groups": groups[:4]}), path)


def test_a_many_valued_binary_sensitive_column_points_to_groups(tmp_path):
    path = write_csv(tmp_path / "g.csv", GROUPS_CSV)
    with pytest.raises(DataError, match="exactly two distinct values.*dataset.sensitive.groups"):
        load_csv(table_spec(path), path)


def test_dutch_sex_by_country_of_birth_has_six_groups_split_by_group_and_label(data_dir):
    """The shipped k-group spec: Dutch with sex × country_birth (6 groups), every row matched, the
    Dirichlet split cutting each (group, label) cell."""
    spec = shipped_spec("dutch_sex_country")
    data = load_dataset(spec, data_dir)
    assert spec.num_groups == 6 and data.num_groups == 6 and len(data) == 60420
    assert sorted(torch.unique(data.s).tolist()) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert data.a.shape[1] == data.num_features + 5
    clients = partition_clients(data, 4, seed=0, scheme="dirichlet")
    assert sum(len(c.train) + len(c.test) for c in clients) == len(data)
    assert all(c.train.num_groups == 6 for c in clients)


def test_dutch_marital_status_has_four_groups_with_sex_a_feature(data_dir):
    spec = shipped_spec("dutch_marital")
    data = load_dataset(spec, data_dir)
    assert spec.num_groups == 4 and data.num_groups == 4
    assert [int((data.s == g).sum()) for g in range(4)] == [19656, 36655, 543, 3566]  # codes 1..4
    assert data.feature_names[0] == "sex" and "Marital_status" not in data.feature_names
