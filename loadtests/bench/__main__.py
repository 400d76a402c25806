"""``python -m loadtests.bench ...`` = ``streamharness bench ...``."""

from __future__ import annotations

import sys

from loadtests.cli import bench_main

sys.exit(bench_main())
