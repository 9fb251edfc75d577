"""Node's initialise-drop-serve pattern, with the ``permission`` fixture.

A server reads its configuration and checks its platform at start-up, then
gives up what serving requests does not need: a compromised request handler
can then neither read files nor start programs. ``drop()`` is irreversible,
as Node's ``process.permission.drop()``, so the test body runs in a forked
child; requesting the fixture isolates the test even without a marker
(everything is allowed until it drops).
"""

from pytest_permission import raises_access_denied

from weatherapp import config
from weatherapp.cli import platform_name
from weatherapp.client import WeatherClient


def test_initialise_drop_serve(permission, config_dir, weather_env, weather_server):
    # Initialise: everything is still allowed.
    client = WeatherClient.from_config(config.load(config_dir))
    banner = platform_name()

    # Drop: what serving requests does not need.
    permission.drop("fs.read")
    permission.drop("child")
    assert not permission.has("fs.read", config_dir / "weather.ini")
    assert not permission.has("child")
    assert permission.has("net", f"127.0.0.1:{weather_server.port}")
    assert permission.has("fs.write")  # only what was dropped is gone

    # Serve: the network still works, files and programs do not.
    assert client.forecast("Oslo")["temperature"] == 21
    assert banner
    with raises_access_denied("fs.read", resource=config_dir / "weather.ini"):
        config.load(config_dir)
    with raises_access_denied("child"):
        platform_name()
