"""The mock in a child process (``python -m mockllm``), for what a thread cannot host.

Several workers (``MockConfig(workers=2)``) are processes forked from a parent that does
nothing else (``workers.py``), which a test process with its own threads must not be; so
:class:`MockProcess` starts the command line with the config's settings, waits for its
``listening on`` line and stops it with SIGTERM, the way :class:`~mockllm.server.MockServer`
starts and stops a server in a thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from types import TracebackType
from urllib.parse import urlsplit

from mockllm.app import MockConfig
from mockllm.childproc import Child, start_child

__all__ = ["MockProcess", "command"]


def command(config: MockConfig, host: str, port: int, rules_file: str | None) -> list[str]:
    """``python -m mockllm`` with ``config``'s settings (its rules in ``rules_file``)."""
    argv = [sys.executable, "-m", "mockllm", "--host", host, "--port", str(port)]
    argv += ["--seed", str(config.seed), "--profile", config.profile]
    argv += ["--ledger-size", str(config.ledger_size), "--workers", str(config.workers)]
    for model in config.models:
        argv += ["--model", model]
    if config.any_model:
        argv.append("--any-model")
    if config.directives:
        argv.append("--directives")
    if rules_file is not None:
        argv += ["--rules", rules_file]
    return argv


class MockAddress:
    """The URLs of a running mock (:class:`MockProcess` here, ``MockServer`` in a thread)."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to give an OpenAI client as ``base_url``."""
        return f"{self.url}/v1"


class MockProcess(MockAddress):
    """``python -m mockllm`` as a child process::

    with MockProcess(MockConfig(seed=7, workers=2)) as mock:
        with openai.OpenAI(base_url=mock.base_url, api_key="x") as client:
            ...
    """

    def __init__(self, config: MockConfig | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self.config = config or MockConfig()
        self.host = host
        self.port = port
        self._child: Child | None = None
        self._rules_file: str | None = None

    def start(self, timeout: float = 30.0) -> MockProcess:
        if self.config.rules:
            handle, self._rules_file = tempfile.mkstemp(prefix="mockllm-rules-", suffix=".json")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump({"rules": [rule.to_json() for rule in self.config.rules]}, out)
        argv = command(self.config, self.host, self.port, self._rules_file)
        try:
            self._child = start_child(
                argv,
                timeout_s=timeout,
                stderr=subprocess.STDOUT,
                failure=lambda child: RuntimeError(
                    f"mockllm did not start (exit code {child.proc.returncode}): "
                    f"{child.text[-2000:]}"
                ),
            )
        except BaseException:
            self._remove_rules_file()
            raise
        port = urlsplit(self._child.url).port
        assert port is not None
        self.port = port
        return self

    @property
    def output(self) -> str:
        """Everything the mock printed so far (stdout and stderr)."""
        return self._child.text if self._child is not None else ""

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (SIGKILL after ``timeout``); the exit code (0 for a clean stop)."""
        code = 0
        if self._child is not None:
            code = self._child.stop(timeout)
            self._child = None
        self._remove_rules_file()
        return code

    def _remove_rules_file(self) -> None:
        if self._rules_file is not None:
            os.unlink(self._rules_file)
            self._rules_file = None

    def __enter__(self) -> MockProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
