"""The DeepSense 6G `datasets` builder. datasets 5 runs no loading scripts: instantiate `DeepSense6G` directly."""

from .deepsense6g import DeepSense6G, DeepSense6GConfig, export_parquet, load_deepsense6g, make_windows
from .scenario import COLUMN_ALIASES, DeepSenseRowError, ScenarioReader

__all__ = [
    "COLUMN_ALIASES",
    "DeepSense6G",
    "DeepSense6GConfig",
    "DeepSenseRowError",
    "ScenarioReader",
    "export_parquet",
    "load_deepsense6g",
    "make_windows",
]
