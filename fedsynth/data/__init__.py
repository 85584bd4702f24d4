"""The data layer: dataset specs, loading and encoding, the synthetic table, client partitions.

Plain Python, pandas and torch; the Hydra configs in ``conf/dataset/`` are turned into a
:class:`DatasetSpec` with :meth:`DatasetSpec.from_config`.
"""

from fedsynth.data.errors import DataError
from fedsynth.data.partition import SCHEMES, hold_out, load_partition, partition_clients, split_train_test
from fedsynth.data.spec import DatasetSpec, FeatureSpec, LabelSpec, SensitiveSpec, SyntheticSpec
from fedsynth.data.synthetic import generate_synthetic
from fedsynth.data.tables import (
    DATA_DIR_ENV,
    check_readable_file,
    encoded_feature_names,
    data_directory,
    file_sha256,
    load_csv,
    load_dataset,
    read_csv_file,
    resolve_data_file,
)
from fedsynth.data.types import ClientPartition, TabularData

__all__ = [
    "DATA_DIR_ENV",
    "SCHEMES",
    "ClientPartition",
    "DataError",
    "DatasetSpec",
    "FeatureSpec",
    "LabelSpec",
    "SensitiveSpec",
    "SyntheticSpec",
    "TabularData",
    "check_readable_file",
    "encoded_feature_names",
    "data_directory",
    "file_sha256",
    "generate_synthetic",
    "hold_out",
    "load_csv",
    "load_dataset",
    "load_partition",
    "partition_clients",
    "read_csv_file",
    "resolve_data_file",
    "split_train_test",
]
