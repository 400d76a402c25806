from __future__ import annotations

from reference_server.limits import TokenBucket, check_auth, check_origin


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.05) is False  # half a token
    assert bucket.allow(0.1) is True
    assert bucket.allow(100.0) is True  # refills, capped at burst
    assert sum(bucket.allow(100.0) for _ in range(10)) == 2


def test_origin() -> None:
    assert check_origin("http://a", [], True) is None
    assert check_origin("http://a", ["http://a"], True) is None
    assert check_origin("http://b", ["http://a"], True) == "origin 'http://b' is not allowed"
    assert check_origin(None, ["http://a"], True) is None
    assert check_origin(None, ["http://a"], False) is not None


def test_auth() -> None:
    assert check_auth(None, {}, {}) is None
    assert check_auth("s", {"authorization": "Bearer s"}, {}) is None
    assert check_auth("s", {}, {"access_token": "s"}) is None
    assert check_auth("s", {}, {}) == "missing bearer token"
    assert check_auth("s", {"authorization": "Bearer x"}, {}) == "invalid bearer token"
