"""A cache of forecasts, one JSON file per key, in a cache folder.

Best effort on purpose: a cache that cannot be written must not break the
application, so ``put`` gives up quietly on ``OSError``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class JsonCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            with open(self.path(key), encoding="utf-8") as file:
                value: dict[str, Any] = json.load(file)
        except FileNotFoundError:
            return None
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.path(key).write_text(json.dumps(value), encoding="utf-8")
        except OSError as exc:
            log.warning("cache not written: %s", exc)
