"""The browser in the loop: real Chromium pages as clients of a scenario.

- ``frontend/``: the two React clients (the tutorial's hook, flaws included, and a protocol
  v1 client), their ``package.json`` and the lock that pins React, ``react-use-websocket``
  and ``esbuild``;
- ``bundle.py``: ``npm ci`` from that lock into a cache outside the repository and an
  ``esbuild`` bundle of each client (nothing is fetched when a page runs);
- ``static.py``: the small HTTP server that serves the bundle to the pages on 127.0.0.1;
- ``chromium.py``: where Debian's Chromium is, and why pages cannot run when they cannot;
- ``session.py``: one Playwright-driven Debian Chromium per scenario run;
- ``page.py``: what a page showed and what its WebSocket received, recorded;
- ``frames.py`` (pure): those frames read into the stream's record, per frontend;
- ``pytest_plugin.py``: the ``browser_page`` fixture for users' own frontends.
"""
