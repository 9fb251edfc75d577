"""The ``permission`` fixture and the module-level has()/drop() (spec section 5)."""

from __future__ import annotations

import pytest


def test_fixture_isolates_and_drops_irreversibly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os, pytest
        from pytest_permission import AccessDenied

        PARENT = os.getpid()

        def test_initialise_drop_serve(permission, tmp_path):
            assert os.getpid() != PARENT
            config = tmp_path / "config.ini"
            config.write_text("port=1")          # initialise: everything allowed
            assert permission.has("fs.write", str(config))
            permission.drop("fs.write")           # drop
            assert not permission.has("fs.write")
            assert not permission.has("fs")
            assert permission.has("fs.read", str(config))
            assert config.read_text() == "port=1"  # serve: reads still work
            with pytest.raises(AccessDenied) as info:
                config.write_text("port=2")
            assert info.value.permission == "FileSystemWrite"
            assert [d.permission for d in permission.denials] == ["FileSystemWrite"]

        def test_next_test_starts_fresh(permission, tmp_path):
            assert permission.has("fs.write")
            (tmp_path / "x").write_text("ok")

        def test_unknown_scope_is_an_error(permission):
            with pytest.raises(ValueError, match="unknown permission scope 'fs.raed'"):
                permission.has("fs.raed")
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=3)


def test_module_functions_follow_the_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        import pytest_permission

        @pytest.mark.permission(fs_read=["{tmp_path}"], net=["localhost:8080"])
        def test_marked(tmp_path):
            assert pytest_permission.has("fs.read", tmp_path / "a")
            assert not pytest_permission.has("fs.read", "/etc")
            assert pytest_permission.has("net", "127.0.0.1:8080")
            assert not pytest_permission.has("child")
            pytest_permission.drop("net")
            assert not pytest_permission.has("net", "localhost:8080")

        def test_outside_isolation():
            assert pytest_permission.has("child")
            with pytest.raises(RuntimeError, match="needs an isolated test"):
                pytest_permission.drop("child")
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2)
