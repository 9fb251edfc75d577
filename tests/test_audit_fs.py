"""fs.read / fs.write enforcement, attempted for real in a fresh process."""

from __future__ import annotations

from typing import Any


def test_read_outside_grant_is_denied_and_inside_allowed(enforced: Any, tmp_path: Any) -> None:
    granted = tmp_path / "granted"
    granted.mkdir()
    (granted / "a.txt").write_text("inside")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    out = enforced(
        f"""
        attempt("inside", lambda: open({str(granted / "a.txt")!r}).read())
        attempt("outside", lambda: open({str(secret)!r}).read())
        """,
        {"fs_read": [str(granted)]},
    )
    assert out["inside"] == {"denied": False, "value": "'inside'"}
    assert out["outside"] == {
        "denied": True,
        "permission": "FileSystemRead",
        "resource": str(secret),
        "code": "ERR_ACCESS_DENIED",
    }
