"""An HTTP client for the weather service, on the standard library's ``http.client``."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import quote, urlsplit

from weatherapp.config import Config


class WeatherClient:
    def __init__(self, url: str, api_key: str, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 80
        self.api_key = api_key
        self.timeout = timeout

    @classmethod
    def from_config(cls, config: Config) -> WeatherClient:
        return cls(config.url, config.api_key)

    def forecast(self, city: str) -> dict[str, Any]:
        """``GET /v1/forecast?city=...``; network errors propagate to the caller."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request(
                "GET", f"/v1/forecast?city={quote(city)}", headers={"X-Api-Key": self.api_key}
            )
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"weather service answered {response.status}: {body!r}")
        result: dict[str, Any] = json.loads(body)
        return result
