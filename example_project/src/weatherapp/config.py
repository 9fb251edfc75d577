"""Configuration: ``weather.ini`` in a config folder, overridden by ``WEATHER_*`` variables."""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://api.weather.invalid"


@dataclass(frozen=True)
class Config:
    api_key: str
    url: str
    units: str


def load(config_dir: Path) -> Config:
    """Read ``config_dir/weather.ini``; ``WEATHER_API_KEY`` and ``WEATHER_URL`` win over it."""
    parser = configparser.ConfigParser()
    with open(config_dir / "weather.ini", encoding="utf-8") as file:
        parser.read_file(file)
    section = parser["weather"]
    return Config(
        api_key=os.environ.get("WEATHER_API_KEY", section["api_key"]),
        url=os.environ.get("WEATHER_URL", section.get("url", DEFAULT_URL)),
        units=section.get("units", "metric"),
    )
