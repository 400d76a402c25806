"""Named timing profiles.

``realistic`` follows published measurements of OpenAI's GPT-4o API by Artificial Analysis
(https://artificialanalysis.ai/models/gpt-4o-2024-05-13/providers: OpenAI endpoint,
TTFT 0.39 s, output speed 81 tokens/s, medians): TTFT 390 ms and one token every
1000/81 = 12.3 ms, with a few milliseconds of jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

from mockllm.schedule import Timing

__all__ = ["DEFAULT_TOKENS", "PROFILES", "Profile", "profile_for_model"]

DEFAULT_TOKENS = 32


@dataclass(frozen=True)
class Profile:
    name: str
    timing: Timing
    description: str


PROFILES: dict[str, Profile] = {
    "instant": Profile("instant", Timing(0.0, 0.0, 0.0, 1), "no delays at all (tests)"),
    "fast": Profile("fast", Timing(20.0, 5.0, 1.0, 1), "TTFT 20 ms, 5 ms per token, 1 ms jitter"),
    "realistic": Profile(
        "realistic",
        Timing(390.0, 12.3, 4.0, 1),
        "TTFT 390 ms, 81 tokens/s (GPT-4o on OpenAI, Artificial Analysis medians), 4 ms jitter",
    ),
}

# Model names that pick a profile: mock-<profile>, e.g. mock-fast.
_MODEL_PREFIX = "mock-"


def profile_for_model(model: str) -> str | None:
    """The profile a model name selects, or None if it selects none."""
    if model.startswith(_MODEL_PREFIX):
        name = model[len(_MODEL_PREFIX) :]
        if name in PROFILES:
            return name
    return None
