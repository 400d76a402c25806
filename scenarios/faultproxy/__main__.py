"""``python -m scenarios.faultproxy``: same as ``streamharness proxy``."""

from scenarios.faultproxy.cli import main

raise SystemExit(main())
