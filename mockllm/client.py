"""A small synchronous client for the mock's admin API (``/_mock/...``).

Used by the pytest plugin and usable from any harness::

    admin = MockAdmin("http://127.0.0.1:8000")
    admin.add_rule(match={"nth": 1}, respond={"fault": "status=429;retry_after=0"})
    entries = admin.wait(count=1, outcome="client_disconnected", timeout=5)
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["MockAdmin", "MockAdminError"]


class MockAdminError(Exception):
    """The admin API answered with an error (its OpenAI-shaped body is in ``body``), or could
    not be reached at all (``status`` 0)."""

    def __init__(self, status: int, body: Any):
        message = body.get("error", {}).get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"{status}: {message}")
        self.status = status
        self.body = body


def _near_misses(entries: list[dict[str, Any]]) -> str:
    """Lines for the requests no rule answered, each with its closest rule and why."""
    missed = [e for e in entries if e.get("near_miss")]
    if not missed:
        return ""
    lines = [f"{len(missed)} request(s) matched no rule:"]
    lines += [f"  #{e['seq']} model={e['model']!r}: closest {e['near_miss']}" for e in missed[:10]]
    if len(missed) > 10:
        lines.append(f"  ... and {len(missed) - 10} more (MockAdmin.requests())")
    return "\n" + "\n".join(lines)


class MockAdmin:
    def __init__(self, url: str, *, timeout: float = 30.0):
        # Accept the OpenAI base URL too ("http://host:port/v1").
        self.url = url.rstrip("/").removesuffix("/v1")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            # Callers catch our error, never httpx's.
            message = f"cannot reach the mock at {self.url}: {exc!r}"
            raise MockAdminError(0, {"error": {"message": message}}) from exc
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            raise MockAdminError(response.status_code, body)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_mock/health")
        return result

    def stats(self) -> dict[str, Any]:
        """Streams in flight, ledger waits in progress, ledger entries and capacity."""
        result: dict[str, Any] = self._call("GET", "/_mock/stats")
        return result

    def requests(
        self, *, model: str | None = None, outcome: str | None = None, since_id: str | None = None
    ) -> list[dict[str, Any]]:
        params = {
            k: v for k, v in (("model", model), ("outcome", outcome), ("since_id", since_id)) if v
        }
        result: list[dict[str, Any]] = self._call("GET", "/_mock/requests", params=params)[
            "requests"
        ]
        return result

    def wait(
        self,
        count: int = 1,
        *,
        outcome: str | None = None,
        model: str | None = None,
        since_id: str | None = None,
        timeout: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Block until ``count`` matching entries exist; raises TimeoutError otherwise.
        ``timeout`` is at most 300 s (the server's cap)."""
        body = {
            "count": count,
            "outcome": outcome,
            "model": model,
            "since_id": since_id,
            "timeout": timeout,
        }
        try:
            result: list[dict[str, Any]] = self._call(
                "POST", "/_mock/requests/wait", json=body, timeout=timeout + 10
            )["requests"]
        except MockAdminError as exc:
            if exc.status == 408:
                seen = exc.body.get("requests", []) if isinstance(exc.body, dict) else []
                raise TimeoutError(str(exc) + _near_misses(seen)) from None
            raise
        return result

    def clear(self) -> None:
        self._call("DELETE", "/_mock/requests")

    def rules(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/_mock/rules")["rules"]
        return result

    def add_rule(
        self,
        *,
        respond: dict[str, Any],
        match: dict[str, Any] | None = None,
        times: int | None = None,
        id: str | None = None,
    ) -> dict[str, Any]:
        rule: dict[str, Any] = {"match": match or {}, "respond": respond}
        if times is not None:
            rule["times"] = times
        if id is not None:
            rule["id"] = id
        return self.add_rules([rule])[0]

    def add_rules(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("POST", "/_mock/rules", json={"rules": rules})[
            "rules"
        ]
        return result

    def delete_rule(self, rule_id: str) -> None:
        self._call("DELETE", f"/_mock/rules/{rule_id}")

    def clear_rules(self) -> None:
        self._call("DELETE", "/_mock/rules")

    def assert_all_rules_used(self) -> None:
        """Raise AssertionError naming every rule that answered no request (respx's
        ``assert_all_called``), with the near miss of each request no rule answered."""
        unused = [rule for rule in self.rules() if rule["applied"] == 0]
        if not unused:
            return
        lines = [f"{len(unused)} mockllm rule(s) answered no request:"]
        for rule in unused:
            lines.append(
                f"  rule {rule['id']!r} match={rule['match']} (its match held for "
                f"{rule['seen']} request(s))"
            )
        raise AssertionError("\n".join(lines) + _near_misses(self.requests()))

    def preview(
        self, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Exactly what the mock would answer to this chat request, without recording it."""
        result: dict[str, Any] = self._call("POST", "/_mock/preview", json=body, headers=headers)
        return result

    def config(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_mock/config")
        return result

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change ``seed``, ``profile``, ``directives`` or ``models`` at run time."""
        result: dict[str, Any] = self._call("PATCH", "/_mock/config", json=changes)
        return result

    def reset(self) -> None:
        """Back to the start-up state (ledger cleared, initial rules, initial config)."""
        self._call("POST", "/_mock/reset")
