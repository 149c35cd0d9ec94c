"""Does each twin modality carry beam information? Simple classifiers from GPS alone and camera alone, against
always predicting the most common beam, on a sequence-level train/test split.

    python -m dataset_scripts.digital_twin.sanity --output_dir /tmp/twin --num_samples 1200
"""

from dataclasses import dataclass, field

import numpy as np
from transformers import HfArgumentParser

from ..deepsense6g import load_deepsense6g
from .twin import DEMO_SITES, generate_scenario


def knn_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, k: int = 5) -> np.ndarray:
    """Majority beam among the k nearest training samples (Euclidean)."""
    distances = ((test_x[:, None] - train_x[None]) ** 2).sum(-1)
    neighbours = np.argsort(distances, axis=1)[:, :k]
    return np.array([np.bincount(train_y[row]).argmax() for row in neighbours])


def camera_profile(images) -> np.ndarray:
    """(n, width) column profile: how far each column departs from its row's typical (road, sky) colour.

    Vehicles show up as columns that depart; where they are along the road is what the beam depends on.
    """
    gray = np.stack([np.asarray(image.convert("L"), dtype=np.float32) for image in images])  # (n, H, W)
    return np.abs(gray - np.median(gray, axis=2, keepdims=True)).sum(axis=1)


def modality_accuracy(scenario_dir, cache_dir=None, seed: int = 0) -> dict[str, float]:
    """Beam accuracy of majority, GPS kNN and camera kNN on held-out sequences of one scenario: top-1, and within
    +-2 beams (neighbouring beams of the 4x oversampled codebook overlap, so a near miss loses little power)."""
    data = load_deepsense6g([scenario_dir], "samples", cache_dir=cache_dir, split_fractions=(0.7, 0.0, 0.3),
                            split_seed=seed)
    train, test = data["train"], data["test"]
    train_y, test_y = np.array(train["beam_index"]), np.array(test["beam_index"])
    gps = knn_predict(np.array(train["gps_position"]), train_y, np.array(test["gps_position"]))
    camera = knn_predict(camera_profile(train["image"]), train_y, camera_profile(test["image"]))
    predictions = {"majority": np.full_like(test_y, np.bincount(train_y).argmax()), "gps_knn": gps,
                   "camera_knn": camera}
    result = {"train": len(train_y), "test": len(test_y)}
    for name, predicted in predictions.items():
        result[name] = float((predicted == test_y).mean())
        result[f"{name}_within2"] = float((np.abs(predicted - test_y) <= 2).mean())
    return result


@dataclass
class SanityArguments:
    output_dir: str = field(metadata={"help": "where the twin scenarios are written"})
    presets: list[str] = field(default_factory=lambda: list(DEMO_SITES), metadata={"help": "sites to check"})
    num_samples: int = field(default=1200, metadata={"help": "samples per scenario"})
    seed: int = field(default=1, metadata={"help": "twin seed"})


def main(argv=None):
    (args,) = HfArgumentParser(SanityArguments).parse_args_into_dataclasses(argv)
    print("| scenario | train | test | majority | GPS 5-NN | camera 5-NN | majority +-2 | GPS +-2 | camera +-2 |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        folder = generate_scenario(args.output_dir, preset, num_samples=args.num_samples, seed=args.seed)
        r = modality_accuracy(folder, cache_dir=f"{args.output_dir}/.cache")
        cells = [f"{r[k]:.3f}" for k in ("majority", "gps_knn", "camera_knn", "majority_within2", "gps_knn_within2",
                                         "camera_knn_within2")]
        print(f"| {preset} | {r['train']} | {r['test']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
