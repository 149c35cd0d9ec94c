"""A digital twin of a DeepSense 6G V2I site: traffic, the 60 GHz channel, GPS and camera from one geometry.

Each sequence is one pass of the transmitter vehicle through the base station's field of view, among other traffic
that can block the line of sight. Output is the DeepSense on-disk layout, so the `DeepSense6G` builder reads it as it
reads a real download.
"""

import csv
import datetime
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modeling_wmlm.geo import enu_to_latlon

from .camera import Box, Camera, Scene, render
from .channel import ArrayCodebook, beam_powers
from .channel import Path as RadioPath

SAMPLE_PERIOD_S = 0.1  # DeepSense samples a pass at about 10 Hz
TX_HEIGHT_M = 1.6
GPS_NOISE_M = 0.8  # white receiver noise per fix
GPS_BIAS_M = 1.0  # slowly varying error, one draw per pass
RX_GAIN = 4e7  # puts the peak beam power of a 10 m line-of-sight link near 1, like normalised DeepSense powers
NOISE_POWER = 3e-3  # per received sample
# Each beam's power is measured over a training sequence: averaging its samples lowers the noise on the reported
# power by their number. With single samples, noise alone flips the best beam in half the windows at 25 m.
SAMPLES_PER_BEAM_MEASUREMENT = 100
BLOCKAGE_LOSS_DB = 22.0
GROUND_REFLECTION = 0.35
PALETTE = [(200, 30, 30), (30, 60, 170), (230, 230, 230), (25, 25, 25), (120, 120, 125), (200, 170, 40),
           (40, 120, 60), (150, 80, 40)]


@dataclass(frozen=True)
class SitePreset:
    """The geometry and traffic of one base-station site. Presets differ so cross-site generalisation is tested."""

    name: str
    origin_latlon: tuple[float, float]  # base station
    orientation_deg: float  # array boresight azimuth, degrees clockwise from north
    bs_height_m: float
    road_distance_m: float  # base station to the centre of the nearest lane
    num_lanes: int
    speed_range_mps: tuple[float, float]
    vehicles_per_100m: float  # per lane
    truck_fraction: float
    wall_gap_m: float  # far road edge to a reflecting building facade
    wall_loss_db: float
    night_fraction: float
    lane_width_m: float = 3.5


PRESETS = {
    p.name: p
    for p in [
        SitePreset("twin1", (33.420341, -111.929153), 35.0, 2.5, 8.0, 2, (6.0, 11.0), 0.6, 0.15, 6.0, 7.0, 0.2),
        SitePreset("twin2", (33.424110, -111.939440), 125.0, 3.5, 13.0, 4, (10.0, 16.0), 0.8, 0.25, 10.0, 9.0, 0.3),
        SitePreset("twin3", (33.417900, -111.932500), 250.0, 2.0, 6.0, 2, (4.0, 8.0), 0.3, 0.05, 4.0, 6.0, 0.8),
        SitePreset("twin4", (33.430200, -111.925100), 200.0, 4.5, 18.0, 3, (16.0, 24.0), 0.5, 0.35, 15.0, 10.0, 0.4),
        # More sites for the anchor ablation (training on 4 and on 6 sites, scoring on sites neither saw).
        SitePreset("twin5", (33.426500, -111.935800), 80.0, 3.0, 10.0, 2, (8.0, 13.0), 0.5, 0.20, 8.0, 8.0, 0.3),
        SitePreset("twin6", (33.421700, -111.944200), 160.0, 4.0, 15.0, 3, (12.0, 18.0), 0.7, 0.30, 12.0, 9.5, 0.5),
        SitePreset("twin7", (33.433100, -111.930900), 300.0, 2.8, 9.0, 2, (5.0, 10.0), 0.4, 0.10, 5.0, 6.5, 0.6),
        SitePreset("twin8", (33.415200, -111.921700), 20.0, 3.8, 14.0, 4, (9.0, 15.0), 0.9, 0.20, 9.0, 8.5, 0.25),
    ]
}
DEMO_SITES = ("twin1", "twin2", "twin3", "twin4")  # the main job's and the CLI's: three to train on, a new one


@dataclass
class Vehicle:
    lane: int
    x0: float
    speed: float
    length: float
    width: float
    height: float
    colour: tuple

    def box(self, t: float, lane_y: float, direction: int) -> Box:
        return Box(self.x0 + direction * self.speed * t, lane_y, self.length, self.width, self.height, self.colour,
                   direction)


@dataclass
class Site:
    preset: SitePreset
    codebook: ArrayCodebook = field(default_factory=ArrayCodebook)

    @property
    def lane_centres(self) -> np.ndarray:
        p = self.preset
        return p.road_distance_m + p.lane_width_m * np.arange(p.num_lanes)

    def lane_direction(self, lane: int) -> int:
        return 1 if lane < (self.preset.num_lanes + 1) // 2 else -1  # near lanes one way, far lanes the other

    @property
    def road_near_y(self) -> float:
        return self.preset.road_distance_m - self.preset.lane_width_m / 2

    @property
    def road_far_y(self) -> float:
        return self.road_near_y + self.preset.num_lanes * self.preset.lane_width_m

    @property
    def wall_y(self) -> float:
        return self.road_far_y + self.preset.wall_gap_m

    def half_span(self, y: float) -> float:
        """Half the road length seen within the codebook's field of view at distance y, plus a margin."""
        return y * np.tan(np.radians(self.codebook.field_of_view_deg / 2)) + 5.0

    def to_enu(self, x, y) -> np.ndarray:
        phi = np.radians(self.preset.orientation_deg)
        boresight, right = np.array([np.sin(phi), np.cos(phi)]), np.array([np.cos(phi), -np.sin(phi)])
        return np.outer(x, right) + np.outer(y, boresight)  # (n, 2) east, north


def make_vehicle(rng, preset: SitePreset, lane: int, x0: float, speed: float, allow_truck: bool) -> Vehicle:
    if allow_truck and rng.random() < preset.truck_fraction:
        size = (rng.uniform(8.0, 12.0), rng.uniform(2.4, 2.6), rng.uniform(3.0, 3.8))
    else:
        size = (rng.uniform(4.2, 5.0), rng.uniform(1.7, 1.9), rng.uniform(1.4, 1.7))
    return Vehicle(lane, x0, speed, *size, PALETTE[rng.integers(len(PALETTE))])


def blocks(box: Box, start: np.ndarray, end: np.ndarray) -> bool:
    """Whether the straight ray start -> end (3D) passes through the box (slab test)."""
    lo = np.array([box.x - box.length / 2, box.y - box.width / 2, 0.0])
    hi = np.array([box.x + box.length / 2, box.y + box.width / 2, box.height])
    direction = end - start
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (lo - start) / direction, (hi - start) / direction
    t_near = np.nanmax(np.minimum(t0, t1))
    t_far = np.nanmin(np.maximum(t0, t1))
    return bool(t_near <= t_far and t_far > 0 and t_near < 1)


def radio_paths(site: Site, tx: np.ndarray, others: list[Box]) -> list[RadioPath]:
    """Line of sight, ground bounce and a facade reflection; each loses BLOCKAGE_LOSS_DB per vehicle in its way."""
    bs = np.array([0.0, 0.0, site.preset.bs_height_m])
    wall_image = np.array([tx[0], 2 * site.wall_y - tx[1], tx[2]])
    ground_image = np.array([tx[0], tx[1], -tx[2]])
    specs = [(tx, 1.0), (ground_image, -GROUND_REFLECTION), (wall_image, 10 ** (-site.preset.wall_loss_db / 20))]
    paths = []
    for image, amplitude in specs:
        # The wall path is checked on its straight unfolded ray: a blocker in its way is one seen near that ray.
        blocked = sum(blocks(b, bs, image) for b in others)
        loss = 10 ** (-BLOCKAGE_LOSS_DB * blocked / 20)
        angle = np.arctan2(image[0], image[1])
        paths.append(RadioPath(angle, float(np.linalg.norm(image - bs)), amplitude * loss))
    return paths


def simulate_pass(site: Site, rng: np.random.Generator, max_samples: int):
    """One sequence: yields (tx Box, other Boxes, night) per sample while the transmitter crosses the view."""
    p = site.preset
    lane = int(rng.integers(p.num_lanes))
    direction = site.lane_direction(lane)
    lane_y = site.lane_centres
    span = site.half_span(lane_y[lane])
    tx = make_vehicle(rng, p, lane, -direction * span, rng.uniform(*p.speed_range_mps), allow_truck=False)
    duration = 2 * span / tx.speed
    num_samples = min(max_samples, int(duration / SAMPLE_PERIOD_S))
    reach = site.half_span(lane_y[-1]) + 30 * duration  # far enough for vehicles that enter the view during the pass
    traffic = []
    for other_lane in range(p.num_lanes):
        count = rng.poisson(p.vehicles_per_100m * 2 * reach / 100)
        for x0 in rng.uniform(-reach, reach, count):
            if other_lane == lane and abs(x0 - tx.x0) < 12:  # keep a gap in front of and behind the transmitter
                continue
            speed = tx.speed if other_lane == lane else rng.uniform(*p.speed_range_mps)
            traffic.append(make_vehicle(rng, p, other_lane, x0, speed, allow_truck=True))
    night = bool(rng.random() < p.night_fraction)
    jitter = rng.normal(0.0, 0.25)  # lateral offset in the lane
    for step in range(num_samples):
        t = step * SAMPLE_PERIOD_S
        tx_box = tx.box(t, lane_y[lane] + jitter, direction)
        others = [v.box(t, lane_y[v.lane], site.lane_direction(v.lane)) for v in traffic]
        yield tx_box, [b for b in others if abs(b.x) < 120], night


def generate_scenario(output_dir, preset: str | SitePreset = "twin1", num_samples: int = 300, seed: int = 0,
                      image_size: tuple[int, int] = (160, 90), codebook: ArrayCodebook | None = None) -> Path:
    """Write `<output_dir>/<name>/<name>.csv` and its files in the DeepSense layout; returns the scenario folder.

    Deterministic in (preset, seed): the scene, radio and GPS draw from one stream and the camera's sensor noise from
    another, so the frame size changes only the frames, and fewer samples give a prefix of more samples.
    """
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    site = Site(preset, codebook or ArrayCodebook())
    rng, camera_rng = (np.random.default_rng([seed, zlib.crc32(preset.name.encode()), stream]) for stream in (0, 1))
    folder = Path(output_dir) / preset.name
    for sub in ("unit1/camera_data", "unit1/mmWave_data", "unit1/GPS_data", "unit2/GPS_data"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "unit1/GPS_data/gps_location.txt").write_text("{:.10f}\n{:.10f}\n".format(*preset.origin_latlon))
    camera = Camera(image_size[0], image_size[1], preset.bs_height_m + 0.2,
                    pitch_rad=np.arctan2(preset.bs_height_m, site.lane_centres.mean()))
    scene_kwargs = dict(road_near_y=site.road_near_y, road_far_y=site.road_far_y, wall_y=site.wall_y,
                        lane_edges=list(site.road_near_y + preset.lane_width_m * np.arange(1, preset.num_lanes)))
    start = datetime.datetime(2026, 11, 23, 10, 0, 0) + datetime.timedelta(seconds=int(rng.integers(36000)))
    rows, seq_index = [], 0
    while len(rows) < num_samples:
        seq_index += 1
        gps_bias = rng.normal(0.0, GPS_BIAS_M, 2)
        start += datetime.timedelta(seconds=float(rng.uniform(20, 120)))
        for step, (tx, others, night) in enumerate(simulate_pass(site, rng, num_samples - len(rows))):
            i = len(rows)
            tx_point = np.array([tx.x, tx.y - tx.width / 2 + 0.3, TX_HEIGHT_M])  # antenna on the side facing the BS
            power = beam_powers(site.codebook, radio_paths(site, tx_point, others),
                                NOISE_POWER / SAMPLES_PER_BEAM_MEASUREMENT, rng, RX_GAIN)
            east_north = site.to_enu(tx.x, tx.y)[0] + gps_bias + rng.normal(0.0, GPS_NOISE_M, 2)
            lat, lon = enu_to_latlon(*east_north, *preset.origin_latlon)
            frame = render(camera, Scene(night=night, **scene_kwargs), [tx, *others], camera_rng)
            frame.save(folder / f"unit1/camera_data/image_{i}.jpg", quality=90)
            (folder / f"unit1/mmWave_data/mmWave_power_{i}.txt").write_text("".join(f"{v:.8e}\n" for v in power))
            (folder / f"unit2/GPS_data/gps_location_{i}.txt").write_text(f"{lat:.10f}\n{lon:.10f}\n")
            stamp = start + datetime.timedelta(seconds=step * SAMPLE_PERIOD_S)
            rows.append([i + 1, f"./unit1/camera_data/image_{i}.jpg", f"./unit1/mmWave_data/mmWave_power_{i}.txt",
                         "./unit1/GPS_data/gps_location.txt", f"./unit2/GPS_data/gps_location_{i}.txt",
                         int(power.argmax()) + 1, seq_index, stamp.strftime("%H-%M-%S.%f")])
    with open(folder / f"{preset.name}.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "unit1_rgb", "unit1_pwr_60ghz", "unit1_loc", "unit2_loc", "unit1_beam",
                         "seq_index", "time_stamp[UTC]"])
        writer.writerows(rows)
    return folder


def generate_scenarios(output_dir, presets=DEMO_SITES, **kwargs) -> list[Path]:
    return [generate_scenario(output_dir, preset, **kwargs) for preset in presets]
