"""``fedsynth-spec``: a dataset spec for your own CSV in one command, found by ``fedsynth
dataset=NAME`` through the user config folder on Hydra's search path; then runs on both engines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

BIN = Path(sys.executable).parent
SPEC = ["--label", "income", "--positive", ">50K", "--sensitive", "sex", "--privileged", "M"]
TINY = ["method.k_max=5", "method.synthetic_size=30", "method.synthetic_labels=proportional"]


def write_people(path: Path, rows: int = 400) -> Path:
    """A CSV with a numeric column, a text (categorical) column, a text label and sensitive column."""
    rng = np.random.default_rng(0)
    region = rng.choice(["east", "west", "north"], rows)
    sex = rng.choice(["F", "M"], rows)
    age = rng.normal(40, 10, rows).round(1)
    score = 0.05 * (age - 40) + 0.8 * (region == "east") + 0.7 * (sex == "M") + rng.normal(0, 1, rows)
    frame = pd.DataFrame({"age": age, "region": region, "sex": sex, "income": np.where(score > 0.5, ">50K", "<=50K")})
    frame.to_csv(path, index=False)
    return path


def command(name: str, *arguments: str, cwd: Path, config_dir: Path) -> subprocess.CompletedProcess:
    """A console script of the package, run in ``cwd`` with ``config_dir`` as user config folder."""
    env = {**os.environ, "FEDSYNTH_CONFIG_DIR": str(config_dir), "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(BIN / name), *arguments], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


@pytest.fixture
def people(tmp_path: Path) -> tuple[Path, Path]:
    """(working directory holding people.csv, user config folder)."""
    work = tmp_path / "work"
    work.mkdir()
    write_people(work / "people.csv")
    return work, tmp_path / "config"


def test_spec_is_written_where_fedsynth_finds_it(people: tuple[Path, Path]) -> None:
    work, config = people
    done = command("fedsynth-spec", "people.csv", *SPEC, cwd=work, config_dir=config)
    assert done.returncode == 0, done.stderr
    target = config / "dataset" / "people.yaml"
    assert done.stdout.splitlines() == [
        f"wrote {target}",
        "run it: fedsynth dataset=people        (Flower's simulation; add engine=inprocess for the in-process engine)",
    ]
    spec = yaml.safe_load(target.read_text())
    assert spec["file"] == str(work / "people.csv")  # the relative path, from the working directory
    assert spec["label"] == {"column": "income", "positive": ">50K"}
    assert spec["sensitive"] == {"column": "sex", "privileged": "M"}
    frame = pd.read_csv(work / "people.csv")
    age, region = spec["features"]
    assert region == {"name": "region", "type": "categorical", "levels": ["east", "north", "west"]}
    assert age["name"] == "age" and age["center"] == pytest.approx(frame["age"].mean(), rel=1e-5)
    assert age["scale"] == pytest.approx(frame["age"].std(ddof=0), rel=1e-5)

    again = command("fedsynth-spec", "people.csv", *SPEC, cwd=work, config_dir=config)
    assert again.returncode == 2 and "exists" in again.stderr and "--force" in again.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["people.csv", "--label", "salary", "--positive", "1", "--sensitive", "sex", "--privileged", "M"], "no column(s) ['salary']"),
        (["people.csv", "--label", "income", "--positive", "lots", "--sensitive", "sex", "--privileged", "M"], "never equals the configured positive value 'lots'"),
        (["missing.csv", *SPEC], "missing.csv: no such file"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(people, arguments, message) -> None:
    work, config = people
    done = command("fedsynth-spec", *arguments, cwd=work, config_dir=config)
    assert done.returncode == 2
    assert done.stderr.startswith("fedsynth-spec: ") and len(done.stderr.strip().splitlines()) == 1
    assert message in done.stderr, done.stderr
    assert not (config / "dataset" / "people.yaml").exists()


def test_a_text_column_without_a_spec_names_fedsynth_spec(people: tuple[Path, Path]) -> None:
    work, config = people
    done = command(
        "fedsynth", "engine=inprocess", "dataset=csv", "dataset.file=people.csv",  # relative: the working directory
        "dataset.label.column=income", "dataset.label.positive='>50K'",
        "dataset.sensitive.column=sex", "dataset.sensitive.privileged=M", f"hydra.run.dir={work / 'run'}", *TINY,
        cwd=work, config_dir=config,
    )
    assert done.returncode != 0
    assert "numeric column 'region' has non-numeric value" in done.stderr
    assert f"fedsynth-spec {work / 'people.csv'} --label income --positive '>50K' --sensitive sex --privileged M" in done.stderr


@pytest.mark.slow
def test_a_written_spec_runs_on_both_engines(people: tuple[Path, Path]) -> None:
    work, config = people
    assert command("fedsynth-spec", "people.csv", *SPEC, cwd=work, config_dir=config).returncode == 0
    results = {}
    for engine in ("inprocess", "simulation"):
        done = command("fedsynth", "dataset=people", f"engine={engine}", f"hydra.run.dir={work / engine}", *TINY,
                       cwd=work, config_dir=config)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        results[engine] = json.loads((work / engine / "results.json").read_text())
    assert results["inprocess"]["dataset"] == results["simulation"]["dataset"] == "people"
    assert len(results["inprocess"]["per_client"]) == len(results["simulation"]["per_client"]) == 2
    for key in ("accuracy", "spd", "eod"):
        assert results["simulation"][key] == pytest.approx(results["inprocess"][key], rel=1e-9, abs=1e-12)


def test_spec_of_a_shipped_dataset_has_its_features(data_dir: Path, tmp_path: Path) -> None:
    """On the real Law School file, fedsynth-spec computes the constants conf/dataset holds."""
    done = command(
        "fedsynth-spec", str(data_dir / "law_school.csv"), "--label", "pass_bar", "--positive", "1",
        "--sensitive", "race", "--privileged", "White", "--name", "law", cwd=tmp_path, config_dir=tmp_path / "config",
    )
    assert done.returncode == 0, done.stderr
    written = yaml.safe_load((tmp_path / "config" / "dataset" / "law.yaml").read_text())
    shipped = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "dataset" / "law_school_race.yaml").read_text())
    assert written["features"] == shipped["features"] and written["sha256"] == shipped["sha256"]


def test_spec_reads_a_bom_and_rejects_a_ragged_file_in_one_line(people: tuple[Path, Path]) -> None:
    """issue 24: fedsynth-spec strips a UTF-8 byte-order mark (the label column first) and refuses
    rows wider than the header with one line naming the file and the line."""
    work, config = people
    frame = pd.read_csv(work / "people.csv")
    frame[["income", "age", "region", "sex"]].to_csv(work / "bom.csv", index=False, encoding="utf-8-sig")
    done = command("fedsynth-spec", "bom.csv", *SPEC, cwd=work, config_dir=config)
    assert done.returncode == 0, done.stderr
    spec = yaml.safe_load((config / "dataset" / "bom.yaml").read_text())
    assert spec["label"]["column"] == "income" and "\ufeff" not in json.dumps(spec)
    header, *rows = (work / "people.csv").read_text().splitlines()
    (work / "ragged.csv").write_text(header + "\n" + "".join(row + ",\n" for row in rows))  # a trailing comma
    done = command("fedsynth-spec", "ragged.csv", *SPEC, cwd=work, config_dir=config)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "ragged.csv: line 2 has 5 fields but the header names 4 columns" in done.stderr


def test_several_sensitive_columns_without_privileged_write_every_combination_as_a_group(data_dir: Path, tmp_path: Path) -> None:
    """``--sensitive sex country_birth`` (no ``--privileged``): the spec's groups are the 6 value
    pairs of the file, as the shipped dutch_sex_country spec lists them, and it loads with k = 6."""
    from fedsynth.data import DatasetSpec, load_csv

    done = command(
        "fedsynth-spec", str(data_dir / "dutch.csv"), "--label", "occupation", "--positive", "1",
        "--sensitive", "sex", "country_birth", "--name", "dutch6", cwd=tmp_path, config_dir=tmp_path / "config",
    )
    assert done.returncode == 0, done.stderr
    written = yaml.safe_load((tmp_path / "config" / "dataset" / "dutch6.yaml").read_text())
    shipped = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "dataset" / "dutch_sex_country.yaml").read_text())
    assert written["sensitive"] == shipped["sensitive"]
    assert load_csv(DatasetSpec.from_config(written), data_dir / "dutch.csv").num_groups == 6
    both = command(
        "fedsynth-spec", str(data_dir / "dutch.csv"), "--label", "occupation", "--positive", "1",
        "--sensitive", "sex", "country_birth", "--privileged", "male", cwd=tmp_path, config_dir=tmp_path / "config",
    )
    assert both.returncode == 2 and "--privileged makes one column binary" in both.stderr


def test_categorical_codes_give_the_shipped_one_hot_dutch_spec(data_dir: Path, tmp_path: Path) -> None:
    """--categorical one-hot encodes numeric code columns in numeric order: on the real Dutch file it
    writes the features of conf/dataset/dutch_gender_onehot.yaml, and each code's block of encoded
    columns sums to 1 on every row."""
    from fedsynth.data import DatasetSpec, load_dataset

    codes = [
        "age", "household_position", "household_size", "prev_residence_place", "citizenship",
        "country_birth", "edu_level", "economic_status", "cur_eco_activity", "Marital_status",
    ]
    done = command(
        "fedsynth-spec", str(data_dir / "dutch.csv"), "--label", "occupation", "--positive", "1",
        "--sensitive", "sex", "--privileged", "male", "--categorical", *codes, "--name", "dutch_codes",
        cwd=tmp_path, config_dir=tmp_path / "config",
    )
    assert done.returncode == 0, done.stderr
    written = yaml.safe_load((tmp_path / "config" / "dataset" / "dutch_codes.yaml").read_text())
    shipped_path = Path(__file__).resolve().parents[1] / "conf" / "dataset" / "dutch_gender_onehot.yaml"
    shipped = yaml.safe_load(shipped_path.read_text())
    assert written["features"] == shipped["features"] and written["sha256"] == shipped["sha256"]
    data = load_dataset(DatasetSpec.from_config(shipped), data_dir)
    assert data.num_features == 59
    start = 0
    for feature in shipped["features"]:
        width = len(feature["levels"])
        assert bool((data.x[:, start : start + width].sum(1) == 1).all()), feature["name"]
        start += width
