"""A pinhole camera at the base station that renders the road scene the radio channel is computed from.

Same site frame as `channel.py`: camera at (0, 0, height) looking along +y, tilted down by `pitch`.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


@dataclass
class Box:
    """A vehicle: centre (x, y) on the ground, size (length along x, width along y, height), colour, heading sign."""

    x: float
    y: float
    length: float
    width: float
    height: float
    colour: tuple
    direction: int  # +1 drives towards +x

    def corners(self) -> np.ndarray:
        dx, dy = self.length / 2, self.width / 2
        xs, ys, zs = [self.x - dx, self.x + dx], [self.y - dy, self.y + dy], [0.0, self.height]
        return np.array([[x, y, z] for x in xs for y in ys for z in zs])


@dataclass(frozen=True)
class Camera:
    width: int
    height: int
    mount_height_m: float
    pitch_rad: float
    horizontal_fov_deg: float = 110.0

    @property
    def focal(self) -> float:
        return (self.width / 2) / np.tan(np.radians(self.horizontal_fov_deg / 2))

    def project(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) site-frame points -> (n, 2) pixel coordinates; points behind the camera are pushed to depth 0.05."""
        rel = points - np.array([0.0, 0.0, self.mount_height_m])
        cos, sin = np.cos(self.pitch_rad), np.sin(self.pitch_rad)
        depth = rel[:, 1] * cos - rel[:, 2] * sin
        up = rel[:, 1] * sin + rel[:, 2] * cos
        depth = np.maximum(depth, 0.05)
        u = self.width / 2 + self.focal * rel[:, 0] / depth
        v = self.height / 2 - self.focal * up / depth
        return np.stack([u, v], axis=1)

    def horizon_row(self) -> float:
        return self.height / 2 - self.focal * np.tan(self.pitch_rad)


def convex_hull(points: np.ndarray) -> list[tuple]:
    """Andrew's monotone chain over (n, 2) points."""
    pts = sorted(map(tuple, points.tolist()))

    def turns_left(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]) > 0

    def half(seq):
        hull = []
        for p in seq:
            while len(hull) >= 2 and not turns_left(hull[-2], hull[-1], p):
                hull.pop()
            hull.append(p)
        return hull[:-1]

    return half(pts) + half(pts[::-1])


def _shade(colour, factor):
    return tuple(min(255, max(0, int(c * factor))) for c in colour)


@dataclass
class Scene:
    road_near_y: float
    road_far_y: float
    lane_edges: list[float]
    wall_y: float
    night: bool


def render(camera: Camera, scene: Scene, vehicles: list[Box], rng: np.random.Generator) -> Image.Image:
    """Sky, ground, road with lane marks, a building facade, vehicles far to near; darker and noisier at night."""
    light = 0.3 if scene.night else 1.0
    image = Image.new("RGB", (camera.width, camera.height), _shade((135, 185, 235), light))
    draw = ImageDraw.Draw(image)
    horizon = camera.horizon_row()
    draw.rectangle([0, horizon, camera.width, camera.height], fill=_shade((110, 140, 90), light))

    def quad(x0, x1, y0, y1, z0=0.0, z1=0.0, colour=(0, 0, 0)):
        """Fill the projected quadrilateral (x0, y0, z0) (x1, y0, z0) (x1, y1, z1) (x0, y1, z1)."""
        corners = np.array([[x0, y0, z0], [x1, y0, z0], [x1, y1, z1], [x0, y1, z1]])
        draw.polygon([tuple(p) for p in camera.project(corners)], fill=colour)

    span = 200.0
    quad(-span, span, scene.wall_y, scene.wall_y, 0.0, 8.0, colour=_shade((170, 150, 130), light))  # facade
    quad(-span, span, scene.road_near_y, scene.road_far_y, colour=_shade((70, 70, 75), light))
    marking = _shade((235, 235, 235), max(light, 0.5))
    for y in scene.lane_edges:
        x = np.arange(-span, span, 6.0)
        corners = np.stack([np.stack([x, x + 3.0, x + 3.0, x], -1), np.broadcast_to([y - 0.08, y - 0.08, y + 0.08,
                            y + 0.08], (len(x), 4)), np.zeros((len(x), 4))], -1)  # (marks, 4 corners, xyz)
        for mark in camera.project(corners.reshape(-1, 3)).reshape(-1, 4, 2).tolist():
            draw.polygon([tuple(p) for p in mark], fill=marking)

    for box in sorted(vehicles, key=lambda b: -b.y):  # far to near
        hull = convex_hull(camera.project(box.corners()))
        draw.polygon(hull, fill=_shade(box.colour, light))
        # A darker glass band on the face towards the camera makes the box read as a vehicle.
        near = box.y - box.width / 2
        quad(box.x - 0.4 * box.length, box.x + 0.4 * box.length, near, near, 0.6 * box.height, 0.9 * box.height,
             colour=_shade((40, 50, 60), light))
        if scene.night:
            front = box.x + box.direction * box.length / 2
            for dy in (-0.3, 0.3):
                u, v = camera.project(np.array([[front, near + 0.2 + dy, 0.7]]))[0]
                r = max(1.0, camera.width / 160)
                draw.ellipse([u - r, v - r, u + r, v + r], fill=(255, 250, 210))

    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0.0, 10.0 if scene.night else 4.0, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
