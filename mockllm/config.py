"""The mock's server-wide settings (:class:`MockConfig`) and the admin API's view of them.

Off the token's way proper: the chat handler reads the run-time config (seed, default profile,
served models) when a request comes in, and ``GET``/``PATCH /_mock/config`` read and change it
through :func:`config_json` and :func:`apply_config_patch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mockllm.errors import InvalidRequest
from mockllm.profiles import PROFILES
from mockllm.rules import Rule

__all__ = [
    "DEFAULT_MODELS",
    "MAX_WORKERS",
    "MockConfig",
    "apply_config_patch",
    "config_json",
    "workers_problem",
]

DEFAULT_MODELS = ("mock-instant", "mock-fast", "mock-realistic", "gpt-4o-mini")


@dataclass
class MockConfig:
    """Server-wide settings: the lowest-priority source of behaviour."""

    seed: int = 0
    profile: str = "instant"
    directives: bool = False
    models: tuple[str, ...] = DEFAULT_MODELS
    # Answer every model name, not only ``models`` (a server under test that hard-codes its
    # model, "gpt-4o" or "gpt-3.5-turbo", then needs no configuration).
    any_model: bool = False
    rules: list[Rule] = field(default_factory=list)
    # How many requests the ledger keeps (the oldest are dropped first).
    ledger_size: int = 20_000
    # Own the process's garbage collector (the CLI does; an embedding test process does not):
    # see collector.py.
    manage_gc: bool = False
    # Processes serving the port (workers.py); more than one needs its own process, so
    # MockProcess (process.py) rather than the in-thread MockServer.
    workers: int = 1

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; known: {', '.join(PROFILES)}")
        problem = workers_problem(self.workers)
        if problem:
            raise ValueError(problem)

    def serves(self, model: str) -> bool:
        """Whether a chat request for ``model`` is answered (``mock*`` always is)."""
        return self.any_model or model in self.models or model.startswith("mock")


#: Most workers one mock runs (each is a whole process, about 40 MB).
MAX_WORKERS = 64


def workers_problem(workers: object) -> str | None:
    """Why ``workers`` is not a worker count, or None."""
    if isinstance(workers, bool) or not isinstance(workers, int):
        return f"workers must be an integer from 1 to {MAX_WORKERS}, got {workers!r}"
    if not 1 <= workers <= MAX_WORKERS:
        return (
            f"workers must be from 1 to {MAX_WORKERS}, got {workers} "
            "(one per core is the most that helps)"
        )
    return None


def config_json(config: MockConfig) -> dict[str, Any]:
    """``GET /_mock/config``: the run-time settings and the profiles one may pick."""
    return {
        "seed": config.seed,
        "profile": config.profile,
        "directives": config.directives,
        "models": list(config.models),
        "any_model": config.any_model,
        "profiles": {
            name: {
                "ttft_ms": p.timing.ttft_ms,
                "itl_ms": p.timing.itl_ms,
                "jitter_ms": p.timing.jitter_ms,
                "tokens_per_chunk": p.timing.tokens_per_chunk,
                "description": p.description,
            }
            for name, p in PROFILES.items()
        },
    }


def apply_config_patch(config: MockConfig, body: Any) -> None:
    """``PATCH /_mock/config``: the whole body is checked first, then applied, so a refused
    patch (:class:`~mockllm.errors.InvalidRequest`) changes nothing."""
    if not isinstance(body, dict):
        raise InvalidRequest("The config body must be a JSON object.")
    unknown = set(body) - {"seed", "profile", "directives", "models"}
    if unknown:
        raise InvalidRequest(
            f"Unknown config field(s): {sorted(unknown)}. Known: directives, models, profile, seed."
        )
    changes: dict[str, Any] = {}
    if "seed" in body:
        if isinstance(body["seed"], bool) or not isinstance(body["seed"], int):
            raise InvalidRequest("'seed' must be an integer.", param="seed")
        changes["seed"] = body["seed"]
    if "profile" in body:
        if not isinstance(body["profile"], str) or body["profile"] not in PROFILES:
            raise InvalidRequest(
                f"Unknown profile {body['profile']!r}. Known: {', '.join(PROFILES)}.",
                param="profile",
            )
        changes["profile"] = body["profile"]
    if "directives" in body:
        if not isinstance(body["directives"], bool):
            raise InvalidRequest("'directives' must be a boolean.", param="directives")
        changes["directives"] = body["directives"]
    if "models" in body:
        models = body["models"]
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise InvalidRequest("'models' must be a list of strings.", param="models")
        changes["models"] = tuple(models)
    for name, value in changes.items():
        setattr(config, name, value)
