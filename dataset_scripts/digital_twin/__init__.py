"""Digital twin of DeepSense 6G sites: writes DeepSense-layout scenarios with camera frames, offline and seeded."""

from .channel import ArrayCodebook
from .twin import DEMO_SITES, PRESETS, SitePreset, generate_scenario, generate_scenarios

__all__ = ["DEMO_SITES", "PRESETS", "ArrayCodebook", "SitePreset", "generate_scenario", "generate_scenarios"]
