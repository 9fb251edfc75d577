"""Tests as a suite has them before it adopts pytest-permission: no marker.

The README's guide "Adopting the plugin on an existing suite" audits them,
records what each one uses in ``permissions.json``, and then runs each one
restricted to that, without writing a marker.
"""

import pytest

from weatherapp import config
from weatherapp.cache import JsonCache
from weatherapp.cli import main
from weatherapp.client import WeatherClient


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One cache folder for the whole session."""
    return tmp_path_factory.mktemp("cache")


def test_a_config_file_of_its_own(tmp_path):
    (tmp_path / "weather.ini").write_text("[weather]\napi_key = k\nunits = imperial\n")
    assert config.load(tmp_path).units == "imperial"


def test_forecast(weather_server):
    assert WeatherClient(weather_server.url, "k").forecast("Oslo")["temperature"] == 21


def test_the_shared_cache(cache_dir):
    JsonCache(cache_dir).put("bergen", {"temperature": 12})
    assert JsonCache(cache_dir).get("bergen") == {"temperature": 12}


def test_the_command_line(config_dir, weather_env, tmp_path, capsys):
    assert main(["Oslo", "--config", str(config_dir), "--cache", str(tmp_path)]) == 0
    assert "Oslo 21°" in capsys.readouterr().out
