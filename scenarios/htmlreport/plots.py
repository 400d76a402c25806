"""Plotly figures of latency distributions, time series and token timelines (pure).

Each builder takes plain numbers and returns a figure as a dict (Plotly's JSON), which the page
embeds and ``plotly.min.js`` draws in the browser: hover text per point, zoom, real axes with
ticks. No I/O here, and no template in the figures: the page applies one shared look.

Distributions are drawn as step histograms whose bins fit the data's body: log-spaced bins on a
log axis when the values spread over more than :data:`LOG_SPREAD` (latencies with a long tail:
a linear axis would put most streams in its first bar), linear bins otherwise. Percentile
markers and thresholds are vertical lines named in the legend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = [
    "LOG_SPREAD",
    "Distribution",
    "Lane",
    "Line",
    "Series",
    "bin_edges",
    "distribution_figure",
    "log_ticks",
    "percentile_rows_figure",
    "time_series_figure",
    "timeline_figure",
]

LOG_SPREAD = 20.0
"""Max/min ratio from which a distribution gets a log axis."""
THRESHOLD_SPREAD = 5.0
"""The same ratio when a threshold off the data widens the axis."""
BINS = 40
# Colour-blind-safe (Okabe-Ito), in the order series are drawn.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
MARKER_DASH = {"p50": "dot", "p90": "dash", "p95": "dash", "p99": "longdash"}
THRESHOLD_COLOUR = "#C0392B"
FAULT_COLOUR = "#C0392B"


@dataclass(frozen=True)
class Distribution:
    """Values with their counts (a histogram's samples; counts default to one each)."""

    values: Sequence[float]
    counts: Sequence[int] | None = None

    def pairs(self) -> list[tuple[float, int]]:
        counts = self.counts if self.counts is not None else [1] * len(self.values)
        return [(v, c) for v, c in zip(self.values, counts, strict=True) if c > 0]


@dataclass(frozen=True)
class Line:
    """A vertical line across a distribution: a percentile (``p99 = 41.2 ms``) or a threshold."""

    label: str
    value: float


def bin_edges(
    values: Sequence[float], bins: int = BINS, log: bool | None = None
) -> tuple[list[float], bool]:
    """Bin edges that show the body of ``values`` and whether the axis is logarithmic
    (``log``: decided by the spread unless given).

    Log bins start at the smallest positive value: zeros (a batch of tokens read at once) fall
    into the first bin rather than off a log axis.
    """
    if not values:
        return [0.0, 1.0], False
    lo, hi = min(values), max(values)
    positive = [v for v in values if v > 0]
    low_positive = min(positive) if positive else 0.0
    if log is None:
        log = bool(positive) and hi / low_positive >= LOG_SPREAD
    if log and positive and hi > low_positive:
        a, b = math.log10(low_positive), math.log10(hi)
        step = (b - a) / bins
        return [10 ** (a + i * step) for i in range(bins + 1)], True
    if hi == lo:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    step = (hi - lo) / bins
    return [lo + i * step for i in range(bins + 1)], False


def _counts(pairs: Sequence[tuple[float, int]], edges: Sequence[float]) -> list[int]:
    out = [0] * (len(edges) - 1)
    last = len(out) - 1
    for value, count in pairs:
        # bisect by hand keeps this free of float surprises at the top edge: the maximum
        # belongs to the last bin, anything below the first edge (zeros) to the first
        i = 0 if value <= edges[0] else last
        if edges[0] < value < edges[-1]:
            lo_i, hi_i = 0, last
            while lo_i < hi_i:
                mid = (lo_i + hi_i + 1) // 2
                if edges[mid] <= value:
                    lo_i = mid
                else:
                    hi_i = mid - 1
            i = lo_i
        out[i] += count
    return out


def _fmt(value: float, unit: str) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f} {unit}".strip()
    if abs(value) >= 10:
        return f"{value:.1f} {unit}".strip()
    return f"{value:.3g} {unit}".strip()


def _vlines(
    layout: dict[str, Any],
    lines: Sequence[tuple[Line, str, str]],
    unit: str,
    col: int = 1,
    log: bool = False,
) -> None:
    """Vertical lines with a label at the top, across panel ``col`` of a finished figure.

    Added to the figure's JSON directly: Plotly's ``add_vline`` validates each shape and
    annotation in Python, which took most of a 39-scenario report's build time."""
    axis = "" if col == 1 else str(col)
    merged: dict[tuple[float, str], list[tuple[Line, str, str]]] = {}
    for item in lines:  # p90 = p99 on one line, one label, not two labels over each other
        merged.setdefault((item[0].value, item[1]), []).append(item)
    for n, group in enumerate(merged.values()):
        line = Line(" = ".join(x[0].label for x in group), group[0][0].value)
        colour, dash = group[0][1], group[0][2]
        layout.setdefault("shapes", []).append(
            {"type": "line", "xref": f"x{axis}", "yref": f"y{axis} domain", "x0": line.value,
             "x1": line.value, "y0": 0, "y1": 1,
             "line": {"color": colour, "dash": dash, "width": 1.5}}
        )  # fmt: skip
        layout.setdefault("annotations", []).append(
            # labels step down the panel so that neighbouring lines keep theirs readable
            {"xref": f"x{axis}", "yref": f"y{axis} domain", "x": _log_x(line.value, log),
             "y": 1 - 0.15 * (n % 3),
             "text": f"{line.label} {_fmt(line.value, unit)}", "textangle": -90,
             "showarrow": False, "xanchor": "right", "yanchor": "top",
             "font": {"size": 10, "color": colour}}
        )  # fmt: skip


def _log_x(value: float, log: bool) -> float:
    """An annotation's x: on a log axis Plotly wants the value's log10 (a shape takes the
    value itself)."""
    return math.log10(value) if log and value > 0 else value


def _padded(lo: float, hi: float, log: bool) -> list[float]:
    """An x range a little wider than the bins, so lines at the ends keep their labels (in
    log10 units on a log axis, as Plotly wants them). A log axis cannot reach 0: it starts
    three decades under ``hi`` then."""
    if log:
        hi = hi if hi > 0 else 1.0
        lo = lo if lo > 0 else hi / 1000
    a, b = (math.log10(lo), math.log10(hi)) if log else (lo, hi)
    pad = (b - a) * 0.04 or 0.5
    return [a - pad, b + pad]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values for a log axis from ``lo`` to ``hi`` written out in full (20, 50, 100, 200):
    Plotly's own labels between decades are bare digits ("2" for 200), easy to misread."""
    lo, hi = max(lo, 1e-9), max(hi, 1e-9)
    steps = ((1.0,), (1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0, 7.0), tuple(range(1, 10)))
    ticks: list[float] = []
    for mults in steps:
        ticks = [
            float(f"{m * 10.0**k:.6g}")
            for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            for m in mults
            if lo <= m * 10.0**k <= hi
        ]
        if len(ticks) >= 4:
            break
    return ticks


def _axis_log(fig: go.Figure, log: bool, lo: float, hi: float, **where: Any) -> None:
    if log:
        ticks = log_ticks(lo, hi)
        fig.update_xaxes(type="log", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks], **where)


def distribution_figure(
    panels: Sequence[tuple[str, Mapping[str, Distribution], Sequence[Line], Sequence[Line]]],
    *,
    unit: str = "ms",
    count_label: str | Sequence[str] = "count",
    height: int = 300,
) -> dict[str, Any]:
    """One histogram panel per ``(axis title, {series: distribution}, percentile lines,
    thresholds)``, side by side. Series share the panel's bins, which reach every threshold;
    a legend names the series when there are several. ``count_label``: the y axis title, one
    for all panels or one per panel."""
    fig = make_subplots(rows=1, cols=max(1, len(panels)), horizontal_spacing=0.08)
    shown: set[str] = set()
    vertical: list[tuple[int, list[tuple[Line, str, str]], bool]] = []
    for col, (title, series, percentiles, thresholds) in enumerate(panels, start=1):
        everything = [v for d in series.values() for v, _ in d.pairs()]
        total = sum(c for d in series.values() for _, c in d.pairs())
        # about 2 sqrt(n) bins: a handful of streams is not spread over 40 empty bins
        bins = min(BINS, max(10, math.ceil(2 * math.sqrt(total))))
        edges, log = bin_edges(everything, bins)
        # A threshold off the data's range still shows: the axis reaches it, and turns
        # logarithmic when a linear one would squeeze the data into a few bars.
        lo, hi = edges[0], edges[-1]
        ends = [lo, hi, *(line.value for line in thresholds)]
        lo, hi = min(ends), max(ends)
        if not log and (lo, hi) != (edges[0], edges[-1]) and lo > 0 and hi / lo >= THRESHOLD_SPREAD:
            edges, log = bin_edges(everything, bins, log=True)
        most = 0
        for n, (name, dist) in enumerate(series.items()):
            counts = _counts(dist.pairs(), edges)
            most = max([most, *counts])
            colour = PALETTE[n % len(PALETTE)]
            fig.add_trace(
                go.Scatter(
                    x=[*edges[:-1], edges[-1]],
                    y=[*counts, counts[-1] if counts else 0],
                    mode="lines",
                    line={"shape": "hv", "color": colour, "width": 1.5},
                    fill="tozeroy",
                    name=name,
                    legendgroup=name,
                    showlegend=name not in shown and len(series) > 1,
                    customdata=[[edges[i], edges[i + 1]] for i in range(len(counts))],
                    hovertemplate=(
                        f"{name}: %{{y}} in %{{customdata[0]:.3g}}..%{{customdata[1]:.3g}} "
                        f"{unit}<extra></extra>"
                    ),
                ),
                row=1,
                col=col,
            )
            shown.add(name)
        lines = [(line, "#444", MARKER_DASH.get(line.label, "dot")) for line in percentiles]
        lines += [(line, THRESHOLD_COLOUR, "solid") for line in thresholds]
        vertical.append((col, lines, log))
        scale = "log scale" if log else "linear"
        fig.update_xaxes(title_text=f"{title} ({unit}, {scale})", row=1, col=col)
        label = count_label if isinstance(count_label, str) else count_label[col - 1]
        fig.update_yaxes(title_text=label, rangemode="tozero", row=1, col=col)
        if most <= 5:  # a few samples: whole counts, not 0.2 of a stream
            fig.update_yaxes(dtick=1, row=1, col=col)
        view = _padded(lo, hi, log)
        fig.update_xaxes(range=view, row=1, col=col)
        if log:
            _axis_log(fig, log, 10 ** view[0], 10 ** view[1], row=1, col=col)
    fig.update_layout(
        height=height,
        margin={"l": 60, "r": 20, "t": 30, "b": 50},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
    )
    out = _plain(fig)
    for col, lines, log in vertical:
        _vlines(out["layout"], lines, unit, col, log)
    return out


def percentile_rows_figure(
    panels: Sequence[tuple[str, Sequence[tuple[str, Sequence[float]]]]],
    *,
    percentile: Any,
    unit: str = "ms",
    floor: float = 0.01,
) -> dict[str, Any]:
    """Rows of one distribution each (a scenario, a transport), panels side by side (TTFT,
    ITL): a grey line from min to max, markers at p50, p90 and p99, on a log axis.

    ``percentile(values, p)`` is the caller's percentile rule. Values under ``floor`` (gaps of
    0 ms: tokens read together) are drawn at ``floor``, the left end of the log axis."""
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.04)
    labels: list[str] = []
    for _, rows in panels:
        for label, _v in rows:
            if label not in labels:
                labels.append(label)
    marks = (("p50", "circle", PALETTE[0]), ("p90", "diamond", PALETTE[1]),
             ("p99", "x", PALETTE[5]))  # fmt: skip
    for col, (title, rows) in enumerate(panels, start=1):
        present = [(label, [max(v, floor) for v in values]) for label, values in rows if values]
        xs: list[float | None] = []
        ys: list[str | None] = []
        for label, values in present:
            xs += [min(values), max(values), None]
            ys += [label, label, None]
        fig.add_trace(
            go.Scatter(x=xs, y=ys, mode="lines", line={"color": "#bbb", "width": 6},
                       name="min to max", legendgroup="range", showlegend=col == 1,
                       hoverinfo="skip"),
            row=1, col=col,
        )  # fmt: skip
        for name, symbol, colour in marks:
            p = float(name[1:])
            pts = [(percentile(values, p), label, len(values)) for label, values in present]
            fig.add_trace(
                go.Scatter(
                    x=[x for x, _, _ in pts],
                    y=[y for _, y, _ in pts],
                    customdata=[n for _, _, n in pts],
                    mode="markers",
                    marker={"symbol": symbol, "size": 9, "color": colour},
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    hovertemplate=f"%{{y}}: {name} = %{{x:.3g}} {unit} "
                    "(%{customdata} values)<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text=f"{title} ({unit}, log scale)", row=1, col=col)
        every = [v for _, values in present for v in values]
        if every:
            view = _padded(min(every), max(every), True)
            fig.update_xaxes(range=view, row=1, col=col)
            _axis_log(fig, True, 10 ** view[0], 10 ** view[1], row=1, col=col)
    fig.update_yaxes(categoryorder="array", categoryarray=labels[::-1], type="category")
    fig.update_layout(
        height=120 + 22 * len(labels),
        margin={"l": 10, "r": 20, "t": 30, "b": 50},
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
    )
    fig.update_yaxes(automargin=True)
    return _plain(fig)


@dataclass(frozen=True)
class Series:
    """One line of a time series: epoch seconds and values, drawn in panel ``row``."""

    name: str
    times: Sequence[float]
    values: Sequence[float]
    row: int = 1
    shape: str = "linear"  # "hv": a step (counts per second)


def time_series_figure(
    series: Sequence[Series], *, row_titles: Sequence[str], height_per_row: int = 170
) -> dict[str, Any]:
    """Panels stacked over one shared wall-clock axis (UTC), one per ``row_titles`` entry."""
    rows = len(row_titles)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.06)
    for n, s in enumerate(series):
        fig.add_trace(
            go.Scatter(
                x=[_iso(t) for t in s.times],
                y=list(s.values),
                mode="lines",
                line={"shape": s.shape, "color": PALETTE[n % len(PALETTE)], "width": 1.8},
                name=s.name,
                hovertemplate=f"{s.name}: %{{y:.4g}} at %{{x|%H:%M:%S.%L}}<extra></extra>",
            ),
            row=s.row,
            col=1,
        )
    for row, title in enumerate(row_titles, start=1):
        fig.update_yaxes(title_text=title, rangemode="tozero", row=row, col=1)
    fig.update_xaxes(type="date", tickformat="%H:%M:%S", row=rows, col=1)
    fig.update_xaxes(title_text="time (UTC)", row=rows, col=1)
    fig.update_layout(
        height=60 + height_per_row * rows,
        margin={"l": 70, "r": 20, "t": 30, "b": 50},
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
        hovermode="x unified",
    )
    return _plain(fig)


def _iso(epoch: float) -> str:
    # Plotly reads "YYYY-mm-dd HH:MM:SS.fff" as a date without a time zone: shown as written.
    import datetime as dt

    stamp = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{stamp.microsecond // 1000:03d}"


@dataclass(frozen=True)
class Lane:
    """One stream's row of a timeline: when it was sent, its token marks, how it ended."""

    label: str
    sent_ms: float
    marks_ms: Sequence[float]
    hover: Sequence[str]
    ok: bool  # completed or cancelled (blue); else red
    end_ms: float | None = None
    end: str = ""  # "completed", "cancelled", "error", ... ; "" = cut off (no end seen)
    end_hover: str = ""
    notes: Sequence[str] = field(default_factory=tuple)


_END_SYMBOLS = {"completed": "circle", "cancelled": "square", "error": "x", "timeout": "x"}
TOKEN_OK, TOKEN_BAD = "#0072B2", "#D55E00"


def timeline_figure(
    lanes: Sequence[Lane], faults: Sequence[tuple[float, str]], *, x_title: str
) -> dict[str, Any]:
    """Swim lanes, one row per stream (first on top), a tick per token arrival, the request as
    a triangle, the end as a marker by outcome, faults as red dashed lines across every row."""
    fig = go.Figure()
    labels = [lane.label for lane in lanes]
    for ok, name, colour in ((True, "token (stream ended well)", TOKEN_OK),
                             (False, "token (stream failed or cut off)", TOKEN_BAD)):  # fmt: skip
        xs: list[float] = []
        ys: list[str] = []
        texts: list[str] = []
        for lane in lanes:
            if lane.ok is ok:
                xs += lane.marks_ms
                ys += [lane.label] * len(lane.marks_ms)
                texts += lane.hover
        if xs:
            fig.add_trace(
                go.Scatter(x=xs, y=ys, mode="markers", name=name, hovertext=texts,
                           hoverinfo="text",
                           marker={"symbol": "line-ns-open", "size": 11, "color": colour,
                                   "line": {"width": 1.5, "color": colour}})
            )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=[lane.sent_ms for lane in lanes],
            y=labels,
            mode="markers",
            name="request sent",
            marker={"symbol": "triangle-right", "size": 8, "color": "#555"},
            hovertemplate="%{y}: sent at %{x:.1f} ms<extra></extra>",
        )
    )
    by_end: dict[str, list[Lane]] = {}
    for lane in lanes:
        if lane.end_ms is not None:
            by_end.setdefault(lane.end or "cut off", []).append(lane)
    for end, group in sorted(by_end.items()):
        colour = TOKEN_OK if group[0].ok else TOKEN_BAD
        fig.add_trace(
            go.Scatter(
                x=[lane.end_ms for lane in group],
                y=[lane.label for lane in group],
                mode="markers",
                name=f"end: {end}",
                hovertext=[lane.end_hover for lane in group],
                hoverinfo="text",
                marker={"symbol": _END_SYMBOLS.get(end, "diamond"), "size": 9, "color": colour},
            )
        )
    if faults:
        # vlines have no legend entry nor hover: an invisible trace gives them both
        fig.add_trace(
            go.Scatter(
                x=[t for t, _ in faults],
                y=[labels[0]] * len(faults) if labels else [None] * len(faults),
                mode="markers",
                name="fault (harness action)",
                marker={"symbol": "line-ns", "size": 14, "color": FAULT_COLOUR,
                        "line": {"width": 2, "color": FAULT_COLOUR}},
                hovertext=[f"{t:.0f} ms: {what}" for t, what in faults],
                hoverinfo="text",
            )
        )  # fmt: skip
    fig.update_yaxes(
        type="category",
        categoryorder="array",
        categoryarray=labels[::-1],
        automargin=True,
    )
    fig.update_xaxes(title_text=x_title, rangemode="tozero", zeroline=True)
    fig.update_layout(
        height=130 + 22 * max(1, len(lanes)),
        margin={"l": 10, "r": 20, "t": 30, "b": 50},
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
        hovermode="closest",
    )
    out = _plain(fig)
    for t, _ in faults:
        out["layout"].setdefault("shapes", []).append(
            {"type": "line", "xref": "x", "yref": "y domain", "x0": t, "x1": t, "y0": 0, "y1": 1,
             "line": {"color": FAULT_COLOUR, "dash": "dash", "width": 1}}
        )  # fmt: skip
    return out


def _plain(fig: go.Figure) -> dict[str, Any]:
    """The figure's JSON without Plotly's default template (the page sets one for all)."""
    data: dict[str, Any] = fig.to_plotly_json()
    data["layout"].pop("template", None)
    return {"data": data["data"], "layout": data["layout"]}
