"""The outside servers the harness is judged on, and how to start one as a run's target.

Shared by the verdict tests (``test_verdicts.py``) and the verdict matrix of docs/profiles.md
(``python -m tests.targets.matrix``): one list of servers, one way to start them.
"""

from __future__ import annotations

import contextlib
import re
import textwrap
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from scenarios.runner import RunOptions
from tests.targets import litellm, node, pyservers

PROFILES = Path(__file__).with_name("profiles")
LITELLM_MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Server:
    launcher: str  # "py", "node" or "litellm"
    profile: str  # built-in name, file in ./profiles, or "README:<file>"
    websocket: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)


SERVERS = {
    "ws_text": Server("py", str(PROFILES / "ws_text_chat.yaml"), websocket=True),
    "sse_get": Server("py", "sse-text"),
    "sse_sync": Server("py", str(PROFILES / "sse_sync.yaml")),
    "ai_data_stream": Server("py", "ai-sdk-data"),
    "ai_sdk_ui": Server("node", "ai-sdk"),
    "express_openai": Server("node", "sse-json"),
    # The README's own-shape example: its profile file is written from the README itself.
    "json_ws": Server("py", "README:my_app.yaml", websocket=True),
    "litellm": Server("litellm", "openai"),
}


def readme_profile(folder: Path) -> str:
    """The README's ``# my_app.yaml`` profile, written to ``folder`` as a user would save it."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```yaml\n( *# my_app\.yaml.*?)```", readme, re.S)
    assert len(blocks) == 1, "expected one my_app.yaml example in the README"
    file = folder / "my_app.yaml"
    file.write_text(textwrap.dedent(blocks[0]))
    return str(file)


@contextlib.asynccontextmanager
async def serve_target(name: str, mock_port: int, log_dir: Path) -> AsyncIterator[RunOptions]:
    """Start server ``name`` against a mock on ``mock_port``; yield the run's options for it."""
    provider = f"http://127.0.0.1:{mock_port}/v1"
    server = SERVERS[name]
    if server.launcher == "litellm":
        async with litellm.start(provider, log_dir, LITELLM_MODEL) as (url, key):
            yield RunOptions(
                target=url,
                profile=server.profile,
                mock_port=mock_port,
                target_model=LITELLM_MODEL,
                headers={"Authorization": f"Bearer {key}"},
            )
        return
    launcher = pyservers.start if server.launcher == "py" else node.start
    profile = server.profile
    if profile.startswith("README:"):
        profile = readme_profile(log_dir)
    async with launcher(name, provider, log_dir) as url:
        target = "ws" + url.removeprefix("http") if server.websocket else url
        yield RunOptions(target=target, profile=profile, mock_port=mock_port)
