"""The public API is exactly ``__all__`` (websockets' test_exports idea)."""

from __future__ import annotations

import reference_server


def test_all_names_exist_and_nothing_else_is_advertised() -> None:
    for name in reference_server.__all__:
        assert hasattr(reference_server, name), name
    assert sorted(reference_server.__all__) == sorted(set(reference_server.__all__))
    assert "create_app" in reference_server.__all__
