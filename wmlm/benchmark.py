"""`wmlm benchmark`: WMLM against the field's baselines on the same DeepSense windows, with the field's metrics.

    wmlm benchmark --data_dir ../shared/deepsense6g --protocol in_scenario \
        --methods wmlm gru persistence knn_gps --seeds 0 1 2 --output_dir outputs/benchmark

Every method sees the same train / validation / test windows (whole sequences per split); choices (early stopping)
use validation only. Each method returns beam probabilities (N, horizon, num_beams) for the test windows, which the
metric modules in metrics/ score against the measured future power vectors. Writes OUT/results.json (one record per
method, scenario and seed) and OUT/results.md (mean ± std over seeds).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import evaluate
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import Trainer, TrainingArguments, set_seed

from dataset_scripts.deepsense6g import load_deepsense6g
from dataset_scripts.deepsense6g.deepsense6g import discover_scenarios
from modeling_wmlm import WMLMConfig, WMLMForBeamPrediction, WMLMProcessor
from modeling_wmlm.configuration_wmlm import DEFAULT_ENCODER_CONFIGS
from modeling_wmlm.modeling_wmlm import log_minmax, power_soft_targets

from .data import WindowCollator, fit_normalization, window_kwargs
from .training import parse_arguments

METRICS = Path(__file__).resolve().parents[1] / "metrics"
PROTOCOLS = ("in_scenario", "cross_scenario")


@dataclass
class BenchmarkArguments:
    data_dir: list[str] = field(metadata={"help": "DeepSense scenario folders or zips, or folders holding several"})
    protocol: str = field(default="in_scenario", metadata={
        "help": "in_scenario (each scenario split 0.7 / 0.1 / 0.2 by sequence) or cross_scenario (train on all but "
                "one scenario, a tenth of their sequences validating; test zero-shot on the held-out one, rotating)"})
    methods: list[str] = field(default_factory=lambda: ["wmlm", "gru", "persistence", "knn_gps"], metadata={
        "help": "wmlm, gru, persistence, knn_gps"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "split and training seeds"})
    output_dir: str = field(default="outputs/benchmark", metadata={"help": "results.json, results.md, the cache"})
    preset: str = field(default="wmlm-tiny", metadata={"help": "WMLM preset"})
    modalities: list[str] = field(default_factory=lambda: ["beam", "gps"], metadata={
        "help": "modalities WMLM and the GRU use (real DeepSense 1-5 carry no frames)"})
    epochs: int = field(default=15, metadata={"help": "training epochs of the learned methods (best on validation)"})
    batch_size: int = field(default=64, metadata={"help": "training windows per step"})
    wmlm_learning_rate: float = field(default=1e-3, metadata={"help": "WMLM AdamW learning rate"})
    gru_learning_rate: float = field(default=3e-3, metadata={"help": "GRU Adam learning rate"})
    gru_hidden_size: int = field(default=128, metadata={"help": "GRU hidden size (2 layers)"})
    soft_labels: bool = field(default=False, metadata={
        "help": "train WMLM and the GRU alike on soft targets from the measured future power (softmax of dB / "
                "the config's beam_soft_label_temperature_db) instead of the best beam alone"})

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; choose from {sorted(METHODS)}")


# ----------------------------------------------------------------------------------------------------------------------
# Arrays shared by the baselines


def window_arrays(split: datasets.Dataset) -> dict[str, np.ndarray]:
    columns = split.select_columns(["beam_power", "beam_index", "gps_position", "labels"]).with_format("numpy")
    return {name: np.asarray(columns[name]) for name in columns.column_names}


def one_hot(indices: np.ndarray, num_beams: int) -> np.ndarray:
    return np.eye(num_beams, dtype=np.float32)[indices]


# ----------------------------------------------------------------------------------------------------------------------
# Methods: (window arrays per split, the datasets, args, seed) -> {"validation": p, "test": p}, beam probabilities
# (N, horizon, num_beams) per split; fit on train, choose on validation.


def persistence(data, splits, args, seed) -> dict[str, np.ndarray]:
    """Repeat the last best beam for every future step."""
    def predict(split):
        last = split["beam_index"][:, -1]
        return np.repeat(one_hot(last, split["beam_power"].shape[-1])[:, None], split["labels"].shape[1], axis=1)

    return {name: predict(data[name]) for name in ("validation", "test")}


def knn_gps(data, splits, args, seed, k: int = 5) -> dict[str, np.ndarray]:
    """The future beams of the k training windows whose last position is nearest, as vote shares per step."""
    train = data["train"]

    def predict(split):
        distance = np.linalg.norm(split["gps_position"][:, None, -1] - train["gps_position"][None, :, -1], axis=-1)
        nearest = np.argsort(distance, axis=1)[:, :k]  # (N, k)
        future = train["labels"].argmax(-1)[nearest]  # (N, k, horizon)
        return one_hot(future, train["beam_power"].shape[-1]).mean(1)

    return {name: predict(data[name]) for name in ("validation", "test")}


class GRUBeamPredictor(nn.Module):
    """The DeepSense GRU baseline: a 2-layer GRU over per-step power (and GPS) features, one head per future step."""

    def __init__(self, in_features: int, hidden_size: int, horizon: int, num_beams: int):
        super().__init__()
        self.gru = nn.GRU(in_features, hidden_size, num_layers=2, batch_first=True, dropout=0.1)
        self.head = nn.Linear(hidden_size, horizon * num_beams)
        self.horizon, self.num_beams = horizon, num_beams

    def forward(self, features):  # (B, T, F) -> (B, horizon, num_beams)
        output, _ = self.gru(features)
        return self.head(output[:, -1]).view(-1, self.horizon, self.num_beams)


def gru_features(split, modalities) -> torch.Tensor:
    """(N, T, F): per step the power and position exactly as WMLM's encoders read them by default."""
    parts = [log_minmax(torch.as_tensor(split["beam_power"], dtype=torch.float32))]
    if "gps" in modalities:
        gps = DEFAULT_ENCODER_CONFIGS["gps"]
        center = torch.tensor(gps["position_center_m"])
        parts.append((torch.as_tensor(split["gps_position"], dtype=torch.float32) - center) / gps["position_scale_m"])
    return torch.cat(parts, -1)


def gru(data, splits, args, seed) -> dict[str, np.ndarray]:
    torch.manual_seed(seed)
    features = {name: gru_features(split, args.modalities) for name, split in data.items()}
    power = torch.tensor(data["train"]["labels"])
    targets = power_soft_targets(power, SOFT_LABEL_TEMPERATURE_DB) if args.soft_labels else power.argmax(-1)
    horizon, num_beams = data["train"]["labels"].shape[1:]
    model = GRUBeamPredictor(features["train"].shape[-1], args.gru_hidden_size, horizon, num_beams)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.gru_learning_rate)
    validation_labels = data["validation"]["labels"].argmax(-1)
    best, best_state = -1.0, None
    generator = torch.Generator().manual_seed(seed)
    for _ in range(args.epochs):
        model.train()
        for batch in torch.randperm(len(targets), generator=generator).split(args.batch_size):
            loss = nn.functional.cross_entropy(model(features["train"][batch]).flatten(0, 1),
                                               targets[batch].flatten(0, 1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(features["validation"]).argmax(-1).numpy() == validation_labels).mean()
        if accuracy > best:
            best, best_state = accuracy, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    with torch.no_grad():
        return {name: model(features[name]).softmax(-1).numpy() for name in ("validation", "test")}


def wmlm(data, splits, args, seed) -> dict[str, np.ndarray]:
    """WMLMForBeamPrediction from scratch through the Trainer, the epoch best on validation top-1 kept."""
    set_seed(seed)
    config = WMLMConfig.from_preset(args.preset, modalities=args.modalities)
    processor = WMLMProcessor.from_config(config)
    model = WMLMForBeamPrediction(fit_normalization(processor, config, splits["hard"]["train"]))
    training = TrainingArguments(
        output_dir=str(Path(args.output_dir) / "scratch"), per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=256, num_train_epochs=args.epochs, learning_rate=args.wmlm_learning_rate,
        lr_scheduler_type="cosine", warmup_steps=0.05, weight_decay=0.01, eval_strategy="epoch",
        save_strategy="epoch", save_total_limit=1, load_best_model_at_end=True, metric_for_best_model="top1",
        report_to=[], remove_unused_columns=False, disable_tqdm=True, logging_strategy="no", seed=seed,
    )
    train = splits["soft" if args.soft_labels else "hard"]["train"]  # soft: the future power vectors as labels
    trainer = Trainer(model=model, args=training, train_dataset=train, eval_dataset=splits["hard"]["validation"],
                      data_collator=WindowCollator(processor), compute_metrics=beam_top1)
    trainer.train()
    return {name: torch.tensor(trainer.predict(splits["hard"][name]).predictions).softmax(-1).numpy()
            for name in ("validation", "test")}


def beam_top1(prediction) -> dict:
    return {"top1": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


SOFT_LABEL_TEMPERATURE_DB = WMLMConfig.beam_soft_label_temperature_db  # the GRU gets WMLM's soft targets
METHODS = {"wmlm": wmlm, "gru": gru, "persistence": persistence, "knn_gps": knn_gps}


# ----------------------------------------------------------------------------------------------------------------------
# Protocols, scoring and reports


def tasks(args):
    """-> [(test scenario name, builder kwargs of the training scenarios, builder kwargs of the test scenario or
    None)]. Validation is always whole sequences of the training scenarios, split off by the builder."""
    folders = discover_scenarios(args.data_dir, extract=str)
    if args.protocol == "in_scenario":
        return [(f.name, {"scenario_paths": [str(f)], "split_fractions": (0.7, 0.1, 0.2)}, None) for f in folders]
    return [(held_out.name, {"scenario_paths": [str(f) for f in folders if f != held_out],
                             "split_fractions": (0.9, 0.1, 0.0)},
             {"scenario_paths": [str(held_out)], "split_fractions": (0.0, 0.0, 1.0)}) for held_out in folders]


def load_task(train_spec: dict, test_spec: dict | None, seed: int, args, config: WMLMConfig) -> tuple[dict, dict]:
    """Windows of one task, in the same order: arrays with the measured future power (for scoring and the
    baselines), and the datasets with beam labels ("hard") and with future power labels ("soft") for WMLM."""
    common = {"split_seed": seed, "cache_dir": str(Path(args.output_dir) / "cache"), **window_kwargs(config)}
    splits = {}
    for kind, config_name in (("hard", "beam_prediction"), ("soft", "power_forecast")):
        splits[kind] = load_deepsense6g(config_name=config_name, **train_spec, **common)
        if test_spec is not None:  # cross_scenario: the held-out scenario is the test split
            splits[kind]["test"] = load_deepsense6g(config_name=config_name, **test_spec, **common)["test"]
    missing = {"train", "validation", "test"} - set(splits["hard"])
    if missing:
        raise ValueError(f"no {sorted(missing)} windows for {train_spec['scenario_paths']} (seed {seed}): too few or "
                         f"too short sequences for a {config.history_len} + {config.horizon} window; give more data")
    return {name: window_arrays(split) for name, split in splits["soft"].items()}, splits


def score(probabilities: np.ndarray, future_power: np.ndarray, metrics: dict) -> dict:
    labels = future_power.argmax(-1)
    topk = metrics["topk"].compute(predictions=probabilities, references=labels)
    loss = metrics["power_loss"].compute(predictions=probabilities, references=future_power)
    calibration = metrics["calibration"].compute(predictions=probabilities, references=future_power)
    return {**topk, "dba": metrics["dba"].compute(predictions=probabilities, references=labels)["dba"], **loss,
            "ece": calibration["ece"], "sweep": calibration["sweep"]}


def main(argv=None):
    (args,) = parse_arguments((BenchmarkArguments,), argv)
    datasets.disable_progress_bars()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {name: evaluate.load(str(METRICS / folder)) for name, folder in (
        ("topk", "beam_topk"), ("dba", "dba_score"), ("power_loss", "beam_power_loss"),
        ("calibration", "beam_calibration"))}
    config = WMLMConfig.from_preset(args.preset, modalities=args.modalities)
    jobs = [(scenario, train, test, seed) for scenario, train, test in tasks(args) for seed in args.seeds]
    records = []
    with tqdm(total=len(jobs) * len(args.methods), desc="benchmark") as progress:
        for scenario, train, test, seed in jobs:
            data, splits = load_task(train, test, seed, args, config)
            for method in args.methods:
                progress.set_postfix_str(f"{scenario} seed {seed} {method}")
                probabilities = METHODS[method](data, splits, args, seed)
                validation = probabilities["validation"].argmax(-1) == data["validation"]["labels"].argmax(-1)
                records.append({"method": method, "scenario": scenario, "seed": seed, "protocol": args.protocol,
                                "train_fraction": 1.0, "validation_top1": float(validation.mean()),
                                **score(probabilities["test"], data["test"]["labels"], metrics)})
                (out / "results.json").write_text(json.dumps(records, indent=1))
                progress.update()
    (out / "results.md").write_text(results_table(records))
    print(results_table(records))
    return records


def results_table(records: list[dict]) -> str:
    """Mean ± std over seeds of the headline metrics, one row per scenario and method."""
    columns = ("validation_top1", "top1", "top3", "dba", "within_0p5db", "power_loss_db")
    lines = ["| scenario | method | " + " | ".join(f"{c} (mean of steps)" if isinstance(records[0][c], list) else c
                                                   for c in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    keys = sorted({(r["scenario"], r["method"]) for r in records}, key=lambda k: (k[0], list(METHODS).index(k[1])))
    for scenario, method in keys:
        mine = [r for r in records if (r["scenario"], r["method"]) == (scenario, method)]
        cells = []
        for column in columns:
            values = np.array([np.mean(r[column]) for r in mine])
            cells.append(f"{values.mean():.3f} ± {values.std():.3f}")
        lines.append(f"| {scenario} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
