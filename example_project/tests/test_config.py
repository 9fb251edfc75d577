"""Loading the configuration: files and environment variables, only where granted."""

import os

import pytest
from pytest_permission import raises_access_denied

from weatherapp import config

# Loading the configuration never touches the network: "inherit" is like the
# rest of the session (which runs without --permission, so unrestricted), and
# net=False takes the network away.
pytestmark = pytest.mark.permission("inherit", net=False)


def test_reads_the_config_file(config_dir):
    assert config.load(config_dir) == config.Config(
        api_key="key-from-file", url=config.DEFAULT_URL, units="metric"
    )


@pytest.fixture
def other_config_dir(tmp_path):
    """A config folder outside tests/data, written in the pytest process (unrestricted)."""
    (tmp_path / "weather.ini").write_text("[weather]\napi_key = stolen\n")
    return tmp_path


# Only tests/data may be read here, and nothing else (every scope a marker does
# not name is denied). A relative marker path is relative to rootdir, the project.
@pytest.mark.permission(fs_read=["tests/data"])
def test_reads_nothing_outside_the_granted_folder(other_config_dir):
    with raises_access_denied("fs.read", resource=other_config_dir / "weather.ini"):
        config.load(other_config_dir)


# A class marker wins over the module's: these tests may read WEATHER_*.
@pytest.mark.permission("inherit", net=False, env=["WEATHER_*"])
class TestEnvironment:
    def test_environment_overrides_the_file(self, config_dir, weather_env):
        loaded = config.load(config_dir)
        assert loaded.api_key == "key-from-env"
        assert loaded.url.startswith("http://127.0.0.1:")

    def test_only_granted_variables_can_be_set(self):
        os.environ["WEATHER_UNITS"] = "imperial"  # granted by WEATHER_*
        with raises_access_denied("env", resource="AWS_SECRET_ACCESS_KEY"):
            os.environ["AWS_SECRET_ACCESS_KEY"] = "x"

    # And a function marker wins over its class's. This one denies everything
    # but takes fs_read alone from the session ("inherit" per keyword: here, all
    # of it): no env grant, so the variables weather_env set are hidden.
    @pytest.mark.permission(fs_read="inherit")
    @pytest.mark.filterwarnings("ignore:the code under test swallowed")
    def test_variables_not_granted_are_hidden(self, config_dir, weather_env, permission):
        assert config.load(config_dir).api_key == "key-from-file"
        # Hidden variables read as missing, and every read is recorded.
        assert [(d.permission, d.resource) for d in permission.denials] == [
            ("Env", "WEATHER_API_KEY"),
            ("Env", "WEATHER_URL"),
        ]


# implicit=False: not even the Python installation or sys.path may be read,
# so this test proves that loading the config reads its file and nothing else.
# {rootdir} is the project folder (a relative path would be relative to it too).
@pytest.mark.permission(fs_read=["{rootdir}/tests/data"], implicit=False)
def test_loading_reads_only_the_config_file(config_dir):
    assert config.load(config_dir).units == "metric"
