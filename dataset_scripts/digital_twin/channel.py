"""60 GHz uplink channel to a base-station ULA, and the received power of each beam of an oversampled codebook.

Site frame: the array lies along x at the origin, its boresight is +y, z is up. Angles of arrival are measured from
boresight towards +x.
"""

from dataclasses import dataclass

import numpy as np

SPEED_OF_LIGHT = 299_792_458.0


@dataclass(frozen=True)
class ArrayCodebook:
    num_antennas: int = 16
    num_beams: int = 64
    carrier_frequency_ghz: float = 60.0
    field_of_view_deg: float = 120.0

    @property
    def wavelength(self) -> float:
        return SPEED_OF_LIGHT / (self.carrier_frequency_ghz * 1e9)

    def steering(self, angles: np.ndarray) -> np.ndarray:
        """Half-wavelength ULA response, (..., num_antennas) for angles (...) in radians."""
        n = np.arange(self.num_antennas)
        return np.exp(1j * np.pi * n * np.sin(np.asarray(angles))[..., None])

    @property
    def beam_angles(self) -> np.ndarray:
        """Beam steering angles, uniform in sin(angle) over the field of view: the codebook is oversampled 4x
        relative to the array's num_antennas orthogonal beams, so neighbouring beams overlap."""
        edge = np.sin(np.radians(self.field_of_view_deg / 2))
        return np.arcsin(np.linspace(-edge, edge, self.num_beams))

    @property
    def weights(self) -> np.ndarray:
        """(num_beams, num_antennas) unit-norm combining vectors."""
        return self.steering(self.beam_angles) / np.sqrt(self.num_antennas)


@dataclass
class Path:
    angle: float  # angle of arrival, radians from boresight
    length_m: float
    amplitude: float  # extra field amplitude factor: reflection loss, blockage


def beam_powers(codebook: ArrayCodebook, paths: list[Path], noise_power: float, rng: np.random.Generator,
                rx_gain: float) -> np.ndarray:
    """(num_beams,) received power per beam: coherent sum of paths through each beam's weights, plus receiver noise.

    Each path has free-space amplitude wavelength / (4 pi d) and the phase of its length, times a cos(angle) element
    pattern, so the power varies with distance, angle and multipath fading as in a real measurement.
    """
    wavelength = codebook.wavelength
    angles = np.array([p.angle for p in paths])
    lengths = np.array([p.length_m for p in paths])
    element = np.clip(np.cos(angles), 0.0, None)
    gains = (np.array([p.amplitude for p in paths]) * element * wavelength / (4 * np.pi * lengths)
             * np.exp(-2j * np.pi * lengths / wavelength))
    received = codebook.steering(angles).T @ gains  # (num_antennas,)
    beamformed = np.sqrt(rx_gain) * (codebook.weights.conj() @ received)  # (num_beams,)
    noise = np.sqrt(noise_power / 2) * (rng.standard_normal(codebook.num_beams)
                                        + 1j * rng.standard_normal(codebook.num_beams))
    return np.abs(beamformed + noise) ** 2
