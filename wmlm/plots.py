"""The benchmark's PNG plots, from its records: top-1 per horizon step, per-scenario bars, the adaptive sweep curve
and a confusion heatmap over beams. Means are over scenarios and seeds; one figure per train fraction where the
protocol has several (few_shot)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def write_plots(records: list[dict], out: Path, num_beams: int) -> list[Path]:
    methods = list(dict.fromkeys(r["method"] for r in records))
    written = [top1_per_horizon(records, methods, out), per_scenario_bars(records, methods, out),
               sweep_curve(records, methods, out)]
    without = sum("confusion" not in r for r in records)
    if without:  # records written before they kept their confusion cells
        print(f"confusion.png not written: {without} of {len(records)} records hold no 'confusion' cells")
    else:
        written.append(confusion_heatmaps(confusion(records, methods, num_beams), out))
    plt.close("all")
    return written


def fraction_label(records: list[dict], fraction: float) -> str:
    return f" (train fraction {fraction:g})" if len({r["train_fraction"] for r in records}) > 1 else ""


def top1_per_horizon(records, methods, out: Path) -> Path:
    fractions = sorted({r["train_fraction"] for r in records})
    figure, axes = plt.subplots(1, len(fractions), figsize=(5 * len(fractions), 4), squeeze=False)
    for ax, fraction in zip(axes[0], fractions, strict=True):
        for method in methods:
            mine = [r["top1"] for r in records if r["method"] == method and r["train_fraction"] == fraction]
            if mine:
                ax.plot(range(1, len(mine[0]) + 1), np.mean(mine, axis=0), marker="o", label=method)
                ax.set_xticks(range(1, len(mine[0]) + 1))
        ax.set(xlabel="future step", ylabel="top-1 accuracy", title="top-1 per step" + fraction_label(records,
                                                                                                        fraction))
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=8)
    return save(figure, out / "top1_per_horizon.png")


def per_scenario_bars(records, methods, out: Path) -> Path:
    fraction = min(r["train_fraction"] for r in records)
    scenarios = sorted({r["scenario"] for r in records})
    width = 0.8 / len(methods)
    figure, ax = plt.subplots(figsize=(max(6, 1.6 * len(scenarios)), 4))
    for i, method in enumerate(methods):
        values = [np.mean([np.mean(r["top1"]) for r in records if (r["method"], r["scenario"], r["train_fraction"])
                           == (method, s, fraction)] or [np.nan]) for s in scenarios]
        ax.bar(np.arange(len(scenarios)) + i * width, values, width, label=method)
    ax.set_xticks(np.arange(len(scenarios)) + width * (len(methods) - 1) / 2, scenarios)
    ax.set(ylabel="top-1 (mean of steps)", title="top-1 per scenario" + fraction_label(records, fraction))
    ax.legend(fontsize=8)
    return save(figure, out / "top1_per_scenario.png")


def sweep_curve(records, methods, out: Path) -> Path:
    """Beams swept against the share of sweeps within 1 dB of the best beam, one point per probability level."""
    fraction = min(r["train_fraction"] for r in records)
    figure, ax = plt.subplots(figsize=(5, 4))
    for method in methods:
        sweeps = [r["sweep"] for r in records if r["method"] == method and r["train_fraction"] == fraction]
        beams = np.mean([[point["beams_swept"] for point in sweep] for sweep in sweeps], axis=0)
        within = np.mean([[point["within_1db"] for point in sweep] for sweep in sweeps], axis=0)
        ax.plot(beams, within, marker="o", label=method)
    ax.set(xscale="log", xlabel="mean beams swept", ylabel="share within 1 dB of the best beam",
           title="adaptive beam sweep" + fraction_label(records, fraction))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(figure, out / "sweep_curve.png")


def confusion(records, methods, num_beams: int) -> dict[str, np.ndarray]:
    """method -> (num_beams, num_beams) counts of (true best beam, predicted beam), summed over its records."""
    counts = {method: np.zeros((num_beams, num_beams), dtype=np.int64) for method in methods}
    for r in records:
        for true, predicted, count in r["confusion"]:
            counts[r["method"]][true, predicted] += count
    return counts


def confusion_heatmaps(confusion: dict[str, np.ndarray], out: Path) -> Path:
    """Row-normalised (true best beam -> predicted beam) shares over all test steps, one panel per method."""
    columns = min(3, len(confusion))
    rows = -(-len(confusion) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(confusion):]:
        ax.axis("off")
    for ax, (method, counts) in zip(axes.flat, confusion.items(), strict=False):  # spare panels stay off
        shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        ax.imshow(shares, cmap="viridis", vmin=0, vmax=1, origin="lower")
        ax.set(title=method, xlabel="predicted beam", ylabel="best beam")
    return save(figure, out / "confusion.png")


def save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path
