"""The HTTP client against the real test server, with network grants per test."""

import pytest
from pytest_permission import assert_access_denied, raises_access_denied

from weatherapp.client import WeatherClient


def test_parses_the_service_url():
    # No marker and no permission fixture: this test runs in the pytest
    # process itself, exactly as if the plugin were not installed.
    client = WeatherClient("http://weather.example:8080/", "key")
    assert (client.host, client.port) == ("weather.example", 8080)


# Only the loopback address; timeout= kills the forked test if the service hangs.
@pytest.mark.permission(net=["127.0.0.1"], timeout=30)
def test_fetches_a_forecast(weather_server):
    client = WeatherClient(weather_server.url, "secret")
    assert client.forecast("Oslo") == {"city": "Oslo", "temperature": 21, "key": "secret"}


# "localhost" covers every loopback address, and a port narrows a grant.
@pytest.mark.permission(net=["localhost:8080"])
def test_grants_name_ports(weather_server):
    with raises_access_denied("net", resource=f"127.0.0.1:{weather_server.port}"):
        WeatherClient(weather_server.url, "secret").forecast("Oslo")


# Default-deny: no keyword at all grants nothing, so no network either.
@pytest.mark.permission()
def test_this_never_touches_the_network(weather_server):
    # AccessDenied is a PermissionError, so code that copes with EACCES copes
    # with a denial too; assert_access_denied checks any error's three fields.
    with pytest.raises(PermissionError) as info:
        WeatherClient(weather_server.url, "secret").forecast("Oslo")
    assert_access_denied(info.value, "Net", f"127.0.0.1:{weather_server.port}")


@pytest.mark.permission(net=["127.0.0.1"])
def test_the_real_service_is_out_of_reach():
    # The default URL would reach the Internet: even its DNS look-up is denied.
    with raises_access_denied("net") as info:
        WeatherClient("http://api.weather.invalid", "secret").forecast("Oslo")
    assert info.value.resource == "api.weather.invalid:80"
