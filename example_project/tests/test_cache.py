"""The JSON file cache: writes only where granted, and denials it swallows still show."""

import logging
from pathlib import Path

import pytest
from pytest_permission import assert_access_denied, raises_access_denied

from weatherapp.cache import JsonCache

# Every test here may read and write its own tmp_path and nothing else (no
# network, no processes: scopes a marker does not name are denied).
# strict=True: the cache swallows OSError by design, so a denial it swallowed
# would otherwise only warn; here it fails the test.
pytestmark = pytest.mark.permission(fs_read=["{tmp_path}"], fs_write=["{tmp_path}"], strict=True)


def test_round_trip(tmp_path):
    cache = JsonCache(tmp_path / "cache")
    cache.put("oslo", {"temperature": 21})
    assert cache.get("oslo") == {"temperature": 21}
    assert (tmp_path / "cache" / "oslo.json").is_file()


def test_a_missing_key_is_none(tmp_path):
    assert JsonCache(tmp_path).get("nowhere") is None


def test_the_real_user_cache_is_out_of_reach():
    real = Path.home() / ".cache" / "weather"
    with raises_access_denied("fs.read", resource=real / "oslo.json"):
        JsonCache(real).get("oslo")


# Not strict, and no fs_write: put() swallows the denial as it would a real
# EACCES. The denial is still recorded: permission.denials lists it, the
# terminal summary shows it, and the test gets a warning (silenced here
# because this test expects it; --permission-strict would fail it).
@pytest.mark.permission(fs_read=["{tmp_path}"])
@pytest.mark.filterwarnings("ignore:the code under test swallowed")
def test_a_denied_write_is_recorded_even_when_swallowed(tmp_path, permission, caplog):
    cache = JsonCache(tmp_path / "cache")
    with caplog.at_level(logging.WARNING):
        cache.put("oslo", {"temperature": 21})
    assert "cache not written: Access to this API has been restricted." in caplog.text
    assert cache.get("oslo") is None
    [denial] = permission.denials  # a record: permission, resource and where it happened
    assert_access_denied(denial, "fs.write", tmp_path / "cache")
    assert "weatherapp/cache.py:" in denial.where
