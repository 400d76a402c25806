"""``python -m mockllm``: the same as ``streamharness mock``."""

from mockllm.cli import main

raise SystemExit(main())
