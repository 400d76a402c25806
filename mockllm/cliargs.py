"""The command-line conventions every ``streamharness`` subcommand shares.

One error style for all of them: ``<prog>: error: <message> (see --help)``, one line on stderr,
exit status 2, whether argparse or the command's own checks found the problem (argparse's usage
block above the message buried it). A mistyped option gets the closest real one. Option types
used by several commands (a port) live here so that they refuse the same things in the same
words. It sits in ``mockllm`` because that is the package every other one may import.
"""

from __future__ import annotations

import argparse
import difflib
import re
from typing import NoReturn

__all__ = ["CommandParser", "port", "usage_error"]

_UNRECOGNIZED = re.compile(r"^unrecognized arguments: (?P<args>.*)$")


def usage_error(prog: str, message: str) -> str:
    """The one-line form of a usage error (without the newline)."""
    return f"{prog}: error: {message} (see --help)"


class CommandParser(argparse.ArgumentParser):
    """argparse with the shared error style and "did you mean" for mistyped options."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, usage_error(self.prog, self.explain(message)) + "\n")

    def explain(self, message: str) -> str:
        """argparse's message, with the closest real option for each unknown one."""
        match = _UNRECOGNIZED.match(message)
        if match is None:
            return message
        known = [s for s in self._option_string_actions if s.startswith("--")]
        hints = []
        for arg in match["args"].split():
            if not arg.startswith("--"):
                continue
            close = difflib.get_close_matches(arg.split("=", 1)[0], known, n=1)
            if close:
                hints.append(f"{arg}: did you mean {close[0]}?")
        return message + (f" ({'; '.join(hints)})" if hints else "")


def port(text: str) -> int:
    """A TCP port to listen on: 0-65535, where 0 asks the system for a free one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535 (0 picks a free port), got {value}")
    return value
