"""Small hand-drawn SVG charts for the HTML report: no plotting library, no script, no network.

Every chart is a well-formed ``<svg>`` element with its text escaped, so the page stays one
self-contained file that opens offline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

REFERENCE = "#8a94a6"
CURRENT = "#d9480f"
PALETTE = ["#1c7ed6", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c", "#5c940d"]
W, H, PAD = 420, 180, 34


def histogram(edges: Sequence[float], reference: Sequence[float], current: Sequence[float]) -> str:
    """Reference shares as grey bars, current shares as an orange outline, per bin."""
    top = max([*reference, *current, 1e-12])
    n = len(reference)
    bw = (W - 2 * PAD) / max(n, 1)
    parts = []
    for i, (r, c) in enumerate(zip(reference, current, strict=True)):
        x = PAD + i * bw
        parts.append(_rect(x, r / top, bw, REFERENCE, fill=True))
        parts.append(_rect(x, c / top, bw, CURRENT, fill=False))
    labels = [
        _text(PAD, H - 8, _fmt(edges[0]), "start"),
        _text(W - PAD, H - 8, _fmt(edges[-1]), "end"),
    ]
    return _svg([*parts, _axes(), *labels, _legend()])


def categories(names: Sequence[str], reference: Sequence[float], current: Sequence[float]) -> str:
    """Side-by-side bars per category: reference grey, current orange."""
    top = max([*reference, *current, 1e-12])
    n = len(names)
    gw = (W - 2 * PAD) / max(n, 1)
    parts = []
    for i, (r, c) in enumerate(zip(reference, current, strict=True)):
        x = PAD + i * gw
        parts.append(_rect(x + gw * 0.1, r / top, gw * 0.4, REFERENCE, fill=True))
        parts.append(_rect(x + gw * 0.5, c / top, gw * 0.4, CURRENT, fill=True))
        parts.append(_text(x + gw / 2, H - 8, names[i][:10], "middle", size=9))
    return _svg([*parts, _axes(), _legend()])


def lines(
    series: Mapping[str, Sequence[float | None]],
    xlabels: Sequence[str],
    *,
    bands: Mapping[str, Sequence[tuple[float | None, float | None]]] | None = None,
    guide: float | None = None,
    guide_label: str = "",
) -> str:
    """One line per series over the windows (gaps where a value is missing), optional
    interval bands, and a dashed guide line (a floor, or the value at registration)."""
    data = {name: [_num(v) for v in s] for name, s in series.items()}
    spans = {name: [(_num(a), _num(b)) for a, b in band] for name, band in (bands or {}).items()}
    values = [v for s in data.values() for v in s if math.isfinite(v)]
    values += [v for band in spans.values() for pair in band for v in pair if math.isfinite(v)]
    if guide is not None and math.isfinite(guide):
        values.append(guide)
    if not values or not xlabels:
        return _svg([_text(W / 2, H / 2, "no data yet", "middle")])
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    n = len(xlabels)

    def x(i: int) -> float:
        return PAD + (W - 2 * PAD) * (i / max(n - 1, 1))

    def y(v: float) -> float:
        return H - PAD - (H - 2 * PAD) * (v - lo) / (hi - lo)

    parts = [_axes()]
    names = list(data)
    for name, band in spans.items():
        pts = [(i, a, b) for i, (a, b) in enumerate(band) if math.isfinite(a + b)]
        if len(pts) > 1:
            upper = " ".join(f"{x(i):.1f},{y(b):.1f}" for i, _, b in pts)
            lower = " ".join(f"{x(i):.1f},{y(a):.1f}" for i, a, _ in reversed(pts))
            color = PALETTE[names.index(name) % len(PALETTE)] if name in data else REFERENCE
            parts.append(f'<polygon points="{upper} {lower}" fill="{color}" opacity="0.15"/>')
    if guide is not None and math.isfinite(guide):
        parts.append(
            f'<line x1="{PAD}" x2="{W - PAD}" y1="{y(guide):.1f}" y2="{y(guide):.1f}" '
            'stroke="#495057" stroke-dasharray="4 3"/>'
        )
        parts.append(_text(W - PAD, y(guide) - 3, guide_label, "end", size=9))
    for k, (name, s) in enumerate(data.items()):
        color = PALETTE[k % len(PALETTE)]
        pts2 = [(i, v) for i, v in enumerate(s) if math.isfinite(v)]
        if len(pts2) > 1:
            path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in pts2)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>'
            )
        for i, v in pts2:
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}">'
                f"<title>{escape(name)} {escape(xlabels[i])}: {_fmt(v)}</title></circle>"
            )
        parts.append(_text(W - PAD + 2, 12 + 11 * k, name[:14], "start", size=9, color=color))
    parts.append(_text(PAD - 3, y(hi) + 3, _fmt(hi), "end", size=9))
    parts.append(_text(PAD - 3, y(lo) + 3, _fmt(lo), "end", size=9))
    parts.append(_text(PAD, H - 8, xlabels[0], "start", size=9))
    if n > 1:
        parts.append(_text(W - PAD, H - 8, xlabels[-1], "end", size=9))
    return _svg(parts, width=W + 90)


def _svg(parts: Sequence[str], width: int = W) -> str:
    body = "".join(parts)
    return f'<svg width="{width}" height="{H}" viewBox="0 0 {width} {H}" role="img">{body}</svg>'


def _rect(x: float, share: float, width: float, color: str, *, fill: bool) -> str:
    h = (H - 2 * PAD) * share
    style = (
        f'fill="{color}" opacity="0.6"'
        if fill
        else f'fill="none" stroke="{color}" stroke-width="1.5"'
    )
    return f'<rect x="{x:.1f}" y="{H - PAD - h:.1f}" width="{width:.1f}" height="{h:.1f}" {style}/>'


def _axes() -> str:
    return (
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#adb5bd"/>'
        f'<line x1="{PAD}" y1="{PAD / 2}" x2="{PAD}" y2="{H - PAD}" stroke="#adb5bd"/>'
    )


def _legend() -> str:
    return (
        f'<rect x="{W - 150}" y="6" width="10" height="10" fill="{REFERENCE}"/>'
        + _text(W - 136, 15, "reference", "start", size=10)
        + f'<rect x="{W - 80}" y="6" width="10" height="10" fill="{CURRENT}"/>'
        + _text(W - 66, 15, "current", "start", size=10)
    )


def _text(
    x: float, y: float, text: str, anchor: str, *, size: int = 10, color: str = "#343a40"
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'fill="{color}">{escape(text)}</text>'
    )


def _num(v: float | None) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def _fmt(v: float) -> str:
    return f"{v:.3g}"
