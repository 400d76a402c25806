"""Render a report page from Jinja2 templates and put ``plotly.min.js`` beside it.

Templates live as package data (``<package>/templates/*.html.j2``) and extend this package's
``base.html.j2``: the banner, the styles, the copy button and the script that draws each
figure when it scrolls into view (a report of 39 scenarios holds about 80 figures; drawing
them all up front costs seconds). Autoescaping is on: every value a template prints is
escaped, and figures go in as JSON through ``tojson``.

The page loads ``plotly.min.js`` from its own folder: one copy per report folder, shipped
inside the ``plotly`` package, so a report opens offline and a page of 80 figures does not
carry 80 copies of the library.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

__all__ = ["PLOTLY_JS", "render_page", "write_plotly_js"]

PLOTLY_JS = "plotly.min.js"


def _environment(package: str) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader("scenarios.htmlreport", "templates")]
    if package != "scenarios.htmlreport":
        loaders.insert(0, jinja2.PackageLoader(package, "templates"))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a typo in a template fails the test, not the page
        trim_blocks=True,
        lstrip_blocks=True,
    )


_ENVIRONMENTS: dict[str, jinja2.Environment] = {}


def render_page(package: str, template: str, context: Mapping[str, Any]) -> str:
    """``template`` of ``package``'s ``templates/`` folder, rendered with ``context``."""
    env = _ENVIRONMENTS.get(package)
    if env is None:
        env = _ENVIRONMENTS[package] = _environment(package)
    return env.get_template(template).render(plotly_js=PLOTLY_JS, **context)


def _bundled_plotly_js() -> Path:
    path = Path(str(resources.files("plotly") / "package_data" / PLOTLY_JS))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: reinstall plotly (pip install --force-reinstall plotly)"
        )
    return path


def write_plotly_js(folder: Path) -> Path:
    """Copy the plotly package's ``plotly.min.js`` into ``folder`` (once: kept if the same)."""
    source = _bundled_plotly_js()
    target = folder / PLOTLY_JS
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        shutil.copyfile(source, target)
    return target
