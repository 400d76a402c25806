"""Target profiles: how the harness reaches a server it did not write, and reads its frames.

- :mod:`scenarios.profiles.schema`: the profile as data (validated pydantic models) and the
  capabilities a scenario may need;
- :mod:`scenarios.profiles.frames`: pure reading of frames and filling of request templates;
- :mod:`scenarios.profiles.loader`: built-in profiles (``builtin/*.yaml``) and user files.

See docs/profiles.md.
"""

from __future__ import annotations

from scenarios.profiles.frames import (
    Frame,
    FrameReader,
    ProfileRecorder,
    RequestValues,
    Unreadable,
)
from scenarios.profiles.loader import (
    BUILTIN_DIR,
    ProfileError,
    UnknownProfileError,
    builtin_names,
    load_profile,
    parse_profile,
)
from scenarios.profiles.schema import CAPABILITIES, Capability, FrameRule, Profile

__all__ = [
    "BUILTIN_DIR",
    "CAPABILITIES",
    "Capability",
    "Frame",
    "FrameReader",
    "FrameRule",
    "Profile",
    "ProfileError",
    "ProfileRecorder",
    "RequestValues",
    "UnknownProfileError",
    "Unreadable",
    "builtin_names",
    "load_profile",
    "parse_profile",
]
