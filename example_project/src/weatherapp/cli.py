"""The command line: ``weather CITY --config DIR --cache DIR``."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from weatherapp import config
from weatherapp.cache import JsonCache
from weatherapp.client import WeatherClient


def platform_name() -> str:
    """The operating system's name, from ``uname`` (shown in the banner)."""
    done = subprocess.run(["uname", "-s"], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="weather")
    parser.add_argument("city")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    args = parser.parse_args(argv)

    cache = JsonCache(args.cache)
    forecast = cache.get(args.city.lower())
    if forecast is None:
        forecast = WeatherClient.from_config(config.load(args.config)).forecast(args.city)
        cache.put(args.city.lower(), forecast)
    print(f"weather on {platform_name()}: {args.city} {forecast['temperature']}°")
    return 0
