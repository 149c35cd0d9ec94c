"""DeepSense 6G as a `datasets` builder.

datasets 5 no longer runs loading scripts, so instantiate the builder directly:

    from dataset_scripts.deepsense6g import DeepSense6G, load_deepsense6g

    builder = DeepSense6G(config_name="beam_prediction", scenario_paths=["/data/scenario1", "/data/scenario2.zip"])
    builder.download_and_prepare()
    dataset = builder.as_dataset()          # DatasetDict with train / validation / test
    builder.bad_rows_report                 # what was skipped, per scenario and reason, with row numbers

or in one call: `load_deepsense6g(["/data/scenario1"], "beam_prediction")`.
"""

import hashlib
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from datasets.table import embed_table_storage
from huggingface_hub import DatasetCard, DatasetCardData

from .scenario import Sample, ScenarioReader, find_scenario_csv

logger = logging.getLogger(__name__)

REPORT_NAME = "bad_rows_report.json"
SPLIT_MODES = ("in_scenario", "cross_scenario")
SPLIT_NAMES = (datasets.Split.TRAIN, datasets.Split.VALIDATION, datasets.Split.TEST)
# Part of the cache path: bump it whenever the prepared examples or splits change, so no stale cache is served.
VERSION = datasets.Version("1.2.0")


@dataclass
class DeepSense6GConfig(datasets.BuilderConfig):
    """
    scenario_paths: scenario folders, their .zip files, or folders holding several of either.
    history_len / horizon / stride: window shape for `beam_prediction` and `power_forecast`.
    split_mode: "in_scenario" (seeded fractions of each scenario's sequences) or "cross_scenario" (named scenarios).
    split_fractions: train / validation / test fractions of sequences, for "in_scenario". A scenario's split depends on
        these and split_seed alone, not on the scenarios loaded with it (`SPLIT_RULE`).
    train_scenarios / validation_scenarios / test_scenarios: scenario names or numbers, for "cross_scenario".
    reversed_train_windows: the training split also holds each training pass's windows read backwards in time (a pass
        in the other direction, for sites that vehicles cross both ways); validation and test never do.
    faster_train_windows: row steps k >= 2; for each, the training split also holds each training pass's windows of
        every k-th row (the same path driven k times as fast); validation and test never do.
    on_bad_row: "skip" (counted in `bad_rows_report.json`) or "error" (raise, naming the file and row).
    label_source: "power" (argmax of the measured power vector) or "csv" (the CSV's own beam label).
    csv_beam_base: index of the first beam in the CSV's label column (DeepSense uses 1).
    inputs_fingerprint: filled in by the builder (see `fingerprint_inputs`); part of the cache key.
    """

    scenario_paths: tuple = ()
    num_beams: int = 64
    history_len: int = 5
    horizon: int = 3
    stride: int = 1
    split_mode: str = "in_scenario"
    split_fractions: tuple = (0.7, 0.1, 0.2)
    split_seed: int = 0
    train_scenarios: tuple = ()
    validation_scenarios: tuple = ()
    test_scenarios: tuple = ()
    reversed_train_windows: bool = False
    faster_train_windows: tuple = ()
    on_bad_row: str = "skip"
    label_source: str = "power"
    csv_beam_base: int = 1
    verify_images: bool = True
    inputs_fingerprint: str = ""  # set by the builder from the files, so changed inputs get a new cache

    def __post_init__(self):
        super().__post_init__()
        self.validate()

    def validate(self):
        """Normalise the paths and check the options. datasets sets user kwargs on a named config with setattr,
        after `__post_init__`, so the builder calls this again once it holds the final config."""
        if isinstance(self.scenario_paths, (str, os.PathLike)):
            self.scenario_paths = (self.scenario_paths,)
        if not self.scenario_paths and self.data_dir:  # datasets' own way to point a builder at its files
            self.scenario_paths = (self.data_dir,)
        self.scenario_paths = tuple(os.path.expanduser(str(p)) for p in self.scenario_paths)
        augmentations = [name for name in ("reversed_train_windows", "faster_train_windows") if getattr(self, name)]
        checks = [
            (self.split_mode in SPLIT_MODES, f"split_mode must be one of {SPLIT_MODES}, got {self.split_mode!r}"),
            (min(self.history_len, self.horizon, self.stride) > 0,
             f"history_len, horizon and stride must be > 0, got {(self.history_len, self.horizon, self.stride)}"),
            (len(self.split_fractions) == 3 and abs(sum(self.split_fractions) - 1) < 1e-6,
             f"split_fractions must be (train, validation, test) summing to 1, got {self.split_fractions}"),
            (self.split_mode != "cross_scenario" or (self.train_scenarios and self.test_scenarios),
             "split_mode='cross_scenario' needs train_scenarios and test_scenarios"),
            (all(isinstance(k, int) and k >= 2 for k in self.faster_train_windows),
             f"faster_train_windows are row steps of at least 2 (1 is the windows as measured), got "
             f"{self.faster_train_windows}"),
            (not (augmentations and self.name == "samples"),
             f"{' and '.join(augmentations)} add training windows; the 'samples' config (stage 1's single samples) "
             f"has none: drop it there, or use a windowed config"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


CITATION = """@article{alkhateeb2023deepsense,
  title   = {DeepSense 6G: A Large-Scale Real-World Multi-Modal Sensing and Communication Dataset},
  author  = {Alkhateeb, Ahmed and Charan, Gouranga and Osman, Tawfik and Hredzak, Andrew and Morais, Joao and
             Demirhan, Umut and Srinivas, Nikhil},
  journal = {IEEE Communications Magazine},
  volume  = {61},
  number  = {9},
  year    = {2023}
}"""
LICENSE = "cc-by-nc-sa-4.0"


class DeepSense6G(datasets.GeneratorBasedBuilder):
    """DeepSense 6G scenarios (real downloads or the digital twin's output) as per-sample or windowed datasets."""

    BUILDER_CONFIG_CLASS = DeepSense6GConfig
    BUILDER_CONFIGS = [
        DeepSense6GConfig(name="samples", version=VERSION,
                          description="One example per measurement, for cross-modal alignment."),
        DeepSense6GConfig(name="beam_prediction", version=VERSION,
                          description="history_len past steps -> the best beam of each of the next horizon steps."),
        DeepSense6GConfig(name="power_forecast", version=VERSION,
                          description="history_len past steps -> the power vectors of the next horizon steps."),
    ]
    DEFAULT_CONFIG_NAME = "samples"

    def __init__(self, *args, **kwargs):
        # datasets keys its cache on the config kwargs alone; the inputs' fingerprint joins them, so a scenario whose
        # files changed is prepared again instead of served from a stale cache.
        paths = kwargs.get("scenario_paths") or kwargs.get("data_dir") or ()
        kwargs["inputs_fingerprint"] = fingerprint_inputs([paths] if isinstance(paths, (str, os.PathLike)) else paths)
        super().__init__(*args, **kwargs)
        self.config.validate()
        # The reader checks on_bad_row and label_source, so bad values fail here, before any preparation.
        self.reader = ScenarioReader(self.config.num_beams, self.config.on_bad_row, self.config.label_source,
                                     self.config.csv_beam_base, self.config.verify_images)

    def _info(self):
        return datasets.DatasetInfo(
            description="DeepSense 6G multi-modal V2I measurements (60 GHz beam power, camera, GPS).",
            features=self._features(),
            homepage="https://www.deepsense6g.net",
            citation=CITATION,
            license=LICENSE,
        )

    def _features(self) -> datasets.Features:
        c = self.config
        common = {"scenario": datasets.Value("string"), "seq_index": datasets.Value("int32")}
        if c.name == "samples":
            return datasets.Features({
                **common,
                "sample_index": datasets.Value("int32"),
                "row": datasets.Value("int32"),
                "time_stamp": datasets.Value("string"),
                "beam_power": datasets.List(datasets.Value("float32"), length=c.num_beams),
                "beam_index": datasets.Value("int32"),
                "csv_beam_index": datasets.Value("int32"),
                "image": datasets.Image(),
                "gps_position": datasets.List(datasets.Value("float32"), length=2),
                "gps_latlon": datasets.List(datasets.Value("float64"), length=2),
                "bs_latlon": datasets.List(datasets.Value("float64"), length=2),
                "lidar_path": datasets.Value("string"),
                "radar_path": datasets.Value("string"),
            })
        if c.name == "beam_prediction":
            labels = datasets.List(datasets.Value("int32"), length=c.horizon)
        else:
            labels = datasets.Array2D((c.horizon, c.num_beams), "float32")
        return datasets.Features({
            **common,
            "sample_index": datasets.List(datasets.Value("int32"), length=c.history_len + c.horizon),
            "beam_power": datasets.Array2D((c.history_len, c.num_beams), "float32"),
            "beam_index": datasets.List(datasets.Value("int32"), length=c.history_len),
            "image": datasets.List(datasets.Image(), length=c.history_len),
            "gps_position": datasets.Array2D((c.history_len, 2), "float32"),
            "has_image": datasets.List(datasets.Value("bool"), length=c.history_len),
            "has_gps": datasets.List(datasets.Value("bool"), length=c.history_len),
            "labels": labels,
        })

    # ------------------------------------------------------------------------------------------------------------------

    def _split_generators(self, dl_manager):
        paths = self.config.scenario_paths
        if not paths:
            raise ValueError("give scenario_paths (scenario folders or .zip files) or data_dir")
        scenarios, reports = {}, {}
        for folder in discover_scenarios(paths, dl_manager.extract):
            samples, report = self.reader.read(folder)
            if report.scenario in scenarios:
                raise ValueError(f"scenario {report.scenario!r} given twice ({report.csv_path})")
            scenarios[report.scenario], reports[report.scenario] = samples, report.to_dict()
        splits = assign_splits(scenarios, self.config)
        self._write_report(reports, splits)
        # A split is written only if it yields an example: sequences shorter than a window give none, and datasets
        # cannot read back a split recorded with no data.
        examples = {name: self._examples(samples, name == datasets.Split.TRAIN) for name, samples in splits.items()}
        return [datasets.SplitGenerator(name=name, gen_kwargs={"examples": items})
                for name, items in examples.items() if items]

    def _examples(self, samples: list[Sample], training: bool) -> list:
        """The samples themselves, or their windows for the windowed configs (training: also those the config's
        augmentations add, read backwards or of every k-th row)."""
        if self.config.name == "samples":
            return samples
        shape = self.config.history_len, self.config.horizon, self.config.stride
        windows = make_windows(samples, *shape)
        if training and self.config.reversed_train_windows:
            windows += make_windows(samples, *shape, backwards=True)
        for row_step in self.config.faster_train_windows if training else ():
            windows += make_windows(samples, *shape, row_step=row_step)
        return windows

    def _write_report(self, reports, splits):
        by_reason = Counter()
        for r in reports.values():
            by_reason.update({reason: c["count"] for reason, c in r["skipped"].items()})
        mismatched = sum(r["label_mismatches"]["count"] for r in reports.values())
        report = {
            "on_bad_row": self.config.on_bad_row,
            "label_source": self.config.label_source,
            "skipped_rows": sum(by_reason.values()),
            "skipped_by_reason": dict(sorted(by_reason.items())),
            "label_mismatches": mismatched,
            "split_sequences": {str(name): sorted({(s.scenario, s.seq_index) for s in samples})
                                for name, samples in splits.items()},
            "scenarios": reports,
        }
        # _output_dir is a temporary folder while preparing; datasets renames it to _cache_dir when done.
        with open(os.path.join(self._output_dir, REPORT_NAME), "w") as handle:
            json.dump(report, handle, indent=1)
        if by_reason or mismatched:
            logger.warning(f"DeepSense6G: skipped {report['skipped_rows']} bad rows {report['skipped_by_reason']}; "
                           f"{mismatched} CSV beam labels disagree with argmax(power); see "
                           f"{os.path.join(self._cache_dir, REPORT_NAME)}")

    @property
    def bad_rows_report(self) -> dict:
        """The report written while preparing: per scenario, skipped rows by reason and label mismatches."""
        with open(os.path.join(self._output_dir, REPORT_NAME)) as handle:
            return json.load(handle)

    def _generate_examples(self, examples: list):
        if self.config.name == "samples":
            for s in examples:
                yield f"{s.scenario}/{s.row}", sample_example(s)
            return
        for window in examples:
            row_step = window[1].row - window[0].row
            kind = "/reversed" if row_step < 0 else f"/every{row_step}" if row_step > 1 else ""
            yield f"{window[0].scenario}/{window[0].row}{kind}", window_example(window, self.config)


# ----------------------------------------------------------------------------------------------------------------------


def fingerprint_inputs(paths) -> str:
    """A cheap key of the scenario inputs: every CSV's bytes, and every other file's path, size and mtime."""
    digest = hashlib.sha256()
    for raw in paths:
        root = Path(os.path.expanduser(str(raw)))
        if root.is_file():  # a zip
            files = [root]
        else:
            files = sorted(Path(folder, name) for folder, _, names in os.walk(root) for name in names)
        for path in files:
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
            if path.suffix.lower() == ".csv":
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def discover_scenarios(paths, extract) -> list[Path]:
    """Scenario folders from folders, zips, or parents of either. `extract` unpacks a zip and returns its folder."""
    found = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"scenario path {path} does not exist")
        if path.suffix == ".zip":
            path = Path(extract(str(path)))
        if path.is_dir() and find_scenario_csv(path):
            found.append(path)
            continue
        children = [c for c in sorted(path.iterdir(), key=_natural_key) if c.is_dir() or c.suffix == ".zip"]
        before = len(found)
        for child in children:
            child = Path(extract(str(child))) if child.suffix == ".zip" else child
            # A zip may unpack to the scenario folder itself or to a folder holding it.
            candidates = [child] if find_scenario_csv(child) else [g for g in sorted(child.iterdir()) if g.is_dir()]
            found.extend(c for c in candidates if find_scenario_csv(c))
        if len(found) == before:
            raise FileNotFoundError(f"{raw}: no DeepSense scenario (a folder holding scenarioN.csv) found")
    return found


def scenario_name(name) -> str:
    return f"scenario{name}" if isinstance(name, int) or str(name).isdigit() else str(name)


# How an in_scenario split draws its passes, recorded beside every trained model (see `training.split_settings`). Each
# scenario gets a generator of its own, so its split is the same whichever scenarios are loaded with it: a test pass
# stays a test pass when the user adds a site. Builders up to 1.1.0 drew every scenario from one generator in turn.
SPLIT_RULE = "each scenario drawn alone from split_seed (builder 1.2.0)"


def assign_splits(scenarios: dict[str, list[Sample]], config: DeepSense6GConfig) -> dict:
    """Whole sequences go to one split, so no two splits share a vehicle pass."""
    splits = {name: [] for name in SPLIT_NAMES}
    if config.split_mode == "cross_scenario":
        named = zip(SPLIT_NAMES, (config.train_scenarios, config.validation_scenarios, config.test_scenarios),
                    strict=True)
        for split, names in named:
            for name in map(scenario_name, names):
                if name not in scenarios:
                    raise ValueError(f"{split} scenario {name!r} is not among the prepared ones {sorted(scenarios)}")
                splits[split].extend(scenarios[name])
        return splits
    for scenario in sorted(scenarios):
        samples = scenarios[scenario]
        sequences = sorted({s.seq_index for s in samples})
        order = np.random.default_rng(config.split_seed).permutation(len(sequences))  # see SPLIT_RULE
        bounds = np.cumsum(split_counts(config.split_fractions, len(sequences)))
        split_of = {sequences[i]: SPLIT_NAMES[int(np.searchsorted(bounds, rank, side="right"))]
                    for rank, i in enumerate(order)}
        for s in samples:
            splits[split_of[s.seq_index]].append(s)
    return splits


def split_counts(fractions, total: int) -> list[int]:
    """Sequences per split: rounded shares, but a split with a positive fraction gets at least one sequence while
    the scenario has one to spare (8 passes at 0.7 / 0.1 / 0.2 give 6 / 1 / 1, not 6 / 0 / 2)."""
    counts = list(np.diff(np.round(np.cumsum([0, *fractions]) * total).astype(int)))
    for i, fraction in enumerate(fractions):
        donor = int(np.argmax(counts))
        if fraction > 0 and counts[i] == 0 and counts[donor] > 1:
            counts[donor] -= 1
            counts[i] += 1
    return counts


def make_windows(samples: list[Sample], history_len: int, horizon: int, stride: int, backwards: bool = False,
                 row_step: int = 1) -> list[list[Sample]]:
    """Windows of history_len + horizon consecutive CSV rows of one sequence (with `backwards`, each run of rows read
    from its last; with `row_step` k, every k-th row of a run, starting from each row).

    A skipped row breaks a run, so a window never bridges a gap in time, nor two sequences, nor two scenarios.
    """
    span = (history_len + horizon - 1) * row_step + 1  # rows from a window's first to its last
    windows = []
    for run in consecutive_runs(samples):
        run = run[::-1] if backwards else run
        windows.extend(run[i : i + span : row_step] for i in range(0, len(run) - span + 1, stride))
    return windows


def consecutive_runs(samples: list[Sample]) -> list[list[Sample]]:
    runs = []
    for sample in samples:
        if runs and sample.scenario == runs[-1][-1].scenario and sample.seq_index == runs[-1][-1].seq_index \
                and sample.row == runs[-1][-1].row + 1:
            runs[-1].append(sample)
        else:
            runs.append([sample])
    return runs


def _as_list(array):
    return None if array is None else array.tolist()


def sample_example(s: Sample) -> dict:
    return {
        "scenario": s.scenario,
        "seq_index": s.seq_index,
        "sample_index": s.sample_index,
        "row": s.row,
        "time_stamp": s.time_stamp,
        "beam_power": s.beam_power,
        "beam_index": s.beam_index,
        "csv_beam_index": s.csv_beam_index,
        "image": s.image_path,
        "gps_position": _as_list(s.gps_position),
        "gps_latlon": _as_list(s.gps_latlon),
        "bs_latlon": _as_list(s.bs_latlon),
        "lidar_path": s.lidar_path,
        "radar_path": s.radar_path,
    }


def window_example(window: list[Sample], config: DeepSense6GConfig) -> dict:
    history, future = window[: config.history_len], window[config.history_len :]
    if config.name == "beam_prediction":
        labels = [s.beam_index for s in future]
    else:
        labels = np.stack([s.beam_power for s in future])
    return {
        "scenario": window[0].scenario,
        "seq_index": window[0].seq_index,
        "sample_index": [s.sample_index for s in window],
        "beam_power": np.stack([s.beam_power for s in history]),
        "beam_index": [s.beam_index for s in history],
        "image": [s.image_path for s in history],
        "gps_position": np.stack([np.zeros(2, np.float32) if s.gps_position is None else s.gps_position
                                  for s in history]),
        "has_image": [s.image_path is not None for s in history],
        "has_gps": [s.gps_position is not None for s in history],
        "labels": labels,
    }


def load_deepsense6g(scenario_paths, config_name: str = "samples", cache_dir: str | None = None,
                     **config_kwargs) -> datasets.DatasetDict:
    """Prepare (or reuse the cached) dataset and return its splits. See `DeepSense6GConfig` for the options."""
    builder = DeepSense6G(config_name=config_name, scenario_paths=scenario_paths, cache_dir=cache_dir,
                          **config_kwargs)
    builder.download_and_prepare()
    return builder.as_dataset()


DATASET_CARD = """---
{{ card_data }}
---

# {{ pretty_name }}

DeepSense 6G measurements prepared by the wmlm `DeepSense6G` builder (config `{{ config_name }}`): {{ description }}

Scenarios: {{ scenarios }}. Splits (whole vehicle passes per split, never shared): {{ split_sizes }}.

```python
from datasets import load_dataset
data = load_dataset("this/repo")
```

## Licence and citation

The DeepSense 6G data are licensed {{ license }} by their authors (www.deepsense6g.net): non-commercial use,
share-alike, with attribution. Cite:

```bibtex
{{ citation }}
```
"""


def export_parquet(dataset: datasets.DatasetDict, folder: str, config_name: str = "samples") -> list[str]:
    """Write `folder/data/<split>-00000-of-00001.parquet`, the layout a Hub dataset repo serves, images embedded, and
    the dataset card `folder/README.md` whose `configs` metadata names the splits, so `load_dataset(folder)` and a
    pushed repository read them back."""
    os.makedirs(os.path.join(folder, "data"), exist_ok=True)
    written = []
    for split, ds in dataset.items():
        embedded = ds.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)
        path = os.path.join(folder, "data", f"{split}-00000-of-00001.parquet")
        embedded.to_parquet(path)
        written.append(path)
    scenarios = sorted({name for ds in dataset.values() for name in ds.unique("scenario")})
    data = DatasetCardData(
        license=LICENSE, pretty_name=f"DeepSense 6G {', '.join(scenarios)} ({config_name})",
        tags=["wireless", "mmwave", "beam-prediction", "6g", "deepsense6g"],
        configs=[{"config_name": "default", "data_files": [{"split": split, "path": f"data/{split}-*.parquet"}
                                                            for split in dataset]}])
    card = DatasetCard.from_template(
        data, template_str=DATASET_CARD, config_name=config_name, scenarios=", ".join(scenarios),
        description={c.name: c.description for c in DeepSense6G.BUILDER_CONFIGS}[config_name], citation=CITATION,
        split_sizes=", ".join(f"{split} {ds.num_rows}" for split, ds in dataset.items()))
    card.save(os.path.join(folder, "README.md"))
    return written
