"""The command line, end to end: config, environment, network, cache and a subprocess."""

import json
import os
import shutil

import pytest
from pytest_permission import raises_access_denied

from weatherapp.cli import main, platform_name

UNAME = shutil.which("uname")  # found at import time, in the pytest process


@pytest.mark.permission(child=True)
def test_platform_name_shells_out():
    assert platform_name() == os.uname().sysname


@pytest.mark.permission()
def test_shelling_out_needs_the_child_permission():
    with raises_access_denied("child", resource=UNAME):
        platform_name()


# Everything the whole program needs, and nothing more: {testdir} is this
# file's folder, {tmp_path} this test's tmp_path. strict=True: a denial the
# program swallowed (say, a cache write) fails the test instead of warning.
@pytest.mark.permission(
    fs_read=["{testdir}/data", "{tmp_path}"],
    fs_write=["{tmp_path}"],
    net=["127.0.0.1"],
    child=True,
    env=["WEATHER_*"],
    strict=True,
)
def test_main(config_dir, weather_env, tmp_path, capsys):
    args = ["Oslo", "--config", str(config_dir), "--cache", str(tmp_path / "cache")]
    assert main(args) == 0
    assert capsys.readouterr().out == f"weather on {os.uname().sysname}: Oslo 21°\n"
    cached = json.loads((tmp_path / "cache" / "oslo.json").read_text())
    assert cached == {"city": "Oslo", "temperature": 21, "key": "key-from-env"}
