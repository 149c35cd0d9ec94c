"""Model cards and Hub pushes for WMLM checkpoints, LoRA adapters and exported datasets.

    wmlm push --folder outputs/wmlm-small/adapt --repo_id org/wmlm-small --benchmark_results OUT/results.json

Cards render from the Jinja templates in model_cards/ with huggingface_hub's `ModelCard`; the Hub metadata's
`model-index` holds the `wmlm benchmark` numbers. Pushes go through `HfApi` (any Hub-compatible endpoint via
`HF_ENDPOINT`); the token comes only from huggingface_hub's own sources (`HF_TOKEN`, `hf auth login`) and this module
never reads, prints or logs it.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, constants
from transformers import AutoConfig

from dataset_scripts.deepsense6g.deepsense6g import CITATION as DEEPSENSE_CITATION

from .training import TRAINING_SUMMARY, parse_arguments

CARDS = Path(__file__).resolve().parents[1] / "model_cards"
MODALITY_WORDS = {"beam": "beam power vectors", "vision": "camera frames", "gps": "vehicle position"}
TAGS = ["wmlm", "wireless", "mmwave", "beam-prediction", "6g", "deepsense6g"]
# Optimiser states and intermediate checkpoints stay local; the final folder is the model.
PUSH_IGNORE = ["checkpoint-*", "checkpoint-*/**", "**/.ipynb_checkpoints/**"]


@dataclass
class PushArguments:
    folder: str = field(metadata={"help": "a checkpoint, adapter or exported dataset folder"})
    repo_id: str = field(metadata={"help": "org/name on the Hub (or the endpoint in HF_ENDPOINT)"})
    repo_type: str = field(default="model", metadata={"help": "model or dataset"})
    benchmark_results: str | None = field(default=None, metadata={
        "help": "results.json of `wmlm benchmark`; its wmlm records become the card's model-index"})
    private: bool = field(default=False, metadata={"help": "create the repository private"})
    commit_message: str = field(default="Upload with wmlm", metadata={"help": "the commit's summary"})


# ----------------------------------------------------------------------------------------------------------------------
# Cards


def wmlm_groups(records: list[dict]) -> list[tuple[tuple, list[dict]]]:
    """The benchmark's WMLM records grouped by (protocol, scenario, train fraction): one group per seed set."""
    keys = sorted({(r["protocol"], r["scenario"], r["train_fraction"]) for r in records if r["method"] == "wmlm"})
    return [(key, [r for r in records if r["method"] == "wmlm" and (r["protocol"], r["scenario"],
                                                                      r["train_fraction"]) == key]) for key in keys]


def eval_results(records: list[dict], model_name: str) -> list[EvalResult]:
    """The benchmark's WMLM records as model-index entries: per protocol, scenario and train fraction, the mean over
    seeds of top-1 per step, top-3 (mean of steps) and the DBA-score."""
    results = []
    for (protocol, scenario, fraction), mine in wmlm_groups(records):
        setting = f"wmlm benchmark {protocol}, train fraction {fraction:g}, mean of seeds " + \
            " ".join(str(r["seed"]) for r in mine)
        top1 = np.mean([r["top1"] for r in mine], axis=0)
        metrics = [(f"top1_step{h + 1}", f"top-1 accuracy, step {h + 1}", value) for h, value in enumerate(top1)]
        metrics += [("top3", "top-3 accuracy (mean of steps)", np.mean([r["top3"] for r in mine])),
                    ("dba", "DeepSense DBA-score", np.mean([r["dba"] for r in mine]))]
        for metric_type, metric_name, value in metrics:
            results.append(EvalResult(
                task_type="beam-prediction", task_name="mmWave beam prediction", dataset_type="deepsense6g",
                dataset_name=f"DeepSense 6G {scenario}", dataset_config=scenario, dataset_split="test",
                metric_type=metric_type, metric_name=metric_name, metric_value=round(float(value), 4),
                metric_config=setting))
    return results


def evaluation_text(folder: Path, records: list[dict] | None) -> str:
    """The benchmark table (WMLM rows, mean over seeds) and the checkpoint's own validation / test metrics."""
    lines = []
    if records:
        lines += ["Measured by `wmlm benchmark` (test passes never used for a choice; mean over seeds):", "",
                  "| protocol | scenario | train fraction | top-1 step 1 / 2 / 3 | top-3 | DBA | within 0.5 dB |",
                  "|---|---|---|---|---|---|---|"]
        for (protocol, scenario, fraction), mine in wmlm_groups(records):
            top1 = " / ".join(f"{v:.3f}" for v in np.mean([r["top1"] for r in mine], axis=0))
            mean = {key: np.mean([np.mean(r[key]) for r in mine]) for key in ("top3", "dba", "within_0p5db")}
            lines.append(f"| {protocol} | {scenario} | {fraction:g} | {top1} | {mean['top3']:.3f} | "
                         f"{mean['dba']:.3f} | {mean['within_0p5db']:.3f} |")
        lines.append("")
    for split in ("validation", "test"):
        path = folder / f"{split}_results.json"
        if path.is_file():
            metrics = json.loads(path.read_text())
            shown = ", ".join(f"{k.removeprefix(split + '_')} {v:.4g}" for k, v in metrics.items()
                              if isinstance(v, float) and not k.endswith(("runtime", "per_second", "epoch")))
            lines.append(f"This checkpoint on its {split} split: {shown}.")
    return "\n".join(lines) or "Not evaluated yet: run `wmlm benchmark` and push with `--benchmark_results`."


def training_text(folder: Path) -> str:
    path = folder / TRAINING_SUMMARY
    if not path.is_file():
        return "No training summary was saved with this folder."
    summary = json.loads(path.read_text())
    summary.pop("split_settings", None)  # for the checks; "split" words it for people
    shown = {key: ", ".join(map(str, value)) if isinstance(value, list) else value for key, value in summary.items()}
    return "\n".join(f"- **{key.replace('_', ' ')}:** {value}" for key, value in shown.items())


def render_card(folder: str, repo_id: str, results: list[dict] | None = None) -> ModelCard:
    """The card of a checkpoint or a LoRA adapter folder, from its config, training summary and benchmark."""
    folder = Path(folder)
    adapter = (folder / "adapter_config.json").is_file()
    adapter_config = json.loads((folder / "adapter_config.json").read_text()) if adapter else {}
    config = AutoConfig.from_pretrained(adapter_config.get("base_model_name_or_path", folder),
                                        trust_remote_code=False) if adapter else AutoConfig.from_pretrained(folder)
    summary = json.loads((folder / TRAINING_SUMMARY).read_text()) if (folder / TRAINING_SUMMARY).is_file() else {}
    data = ModelCardData(
        library_name="peft" if adapter else "transformers", license="apache-2.0", model_name=repo_id,
        tags=TAGS + (["lora", "peft"] if adapter else []), datasets=summary.get("datasets"),
        base_model=adapter_config.get("base_model_name_or_path") if adapter else None,
        eval_results=eval_results(results, repo_id) if results else None)
    values = {
        "model_id": repo_id, "architecture": (config.architectures or ["WMLMModel"])[0],
        "summary": f"the best of {config.num_beams} receive beams for each of the next {config.horizon} steps, from "
                   f"{config.history_len} past steps of {', '.join(MODALITY_WORDS[m] for m in config.modalities)}.",
        "training": training_text(folder), "evaluation": evaluation_text(folder, results),
        "dataset_citation": DEEPSENSE_CITATION.strip(), "modalities": ", ".join(config.modalities),
        **{key: getattr(config, key) for key in ("carrier_frequency_ghz", "num_antennas", "num_beams", "history_len",
                                                 "horizon", "anchor_modality", "num_hidden_layers", "hidden_size")},
    }
    if adapter:
        base = adapter_config.get("base_model_name_or_path")
        values.update(base_model_url=None if Path(base).exists() else f"{constants.ENDPOINT}/{base}",
                      site=", ".join(summary.get("datasets") or ["a new site"]), lora_r=adapter_config["r"],
                      lora_alpha=adapter_config["lora_alpha"], target_modules=adapter_config["target_modules"],
                      modules_to_save=", ".join(adapter_config.get("modules_to_save") or []))
    else:
        values["num_parameters"] = f"{summary['num_parameters']:,}" if "num_parameters" in summary else "n/a"
    template = CARDS / ("lora_adapter.md" if adapter else "base_model.md")
    return ModelCard.from_template(data, template_path=str(template), **values)


# ----------------------------------------------------------------------------------------------------------------------
# Pushes


def push(folder: str, repo_id: str, *, repo_type: str = "model", results: list[dict] | None = None,
         private: bool = False, commit_message: str = "Upload with wmlm") -> str:
    """Create the repository if needed, write the card (models and adapters; an exported dataset brings its own)
    and upload the folder in one commit; -> the commit URL."""
    api = HfApi()
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    if repo_type == "model":
        render_card(folder, repo_id, results).save(Path(folder) / "README.md")
    commit = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type=repo_type,
                               commit_message=commit_message, ignore_patterns=PUSH_IGNORE)
    return commit.commit_url


def main(argv=None):
    (args,) = parse_arguments((PushArguments,), argv)
    results = json.loads(Path(args.benchmark_results).read_text()) if args.benchmark_results else None
    url = push(args.folder, args.repo_id, repo_type=args.repo_type, results=results, private=args.private,
               commit_message=args.commit_message)
    print(f"pushed {args.folder} to {url}")
