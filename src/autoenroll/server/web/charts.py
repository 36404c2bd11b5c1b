"""Dashboard charts as server-rendered inline SVG: no JavaScript, no CDN, readable by screen readers
(each chart has a title and description, and each bar a <title> with its value)."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    url: str = ""  # the filtered list the bar counts: the bar is a link to it


def _linked(bar: Bar, shape: SafeString) -> SafeString:
    return format_html('<a href="{}">{}</a>', bar.url, shape) if bar.url else shape


def _n(value: float) -> str:
    """Coordinates with one decimal (format_html escapes its arguments first, so no format specs there)."""
    return f"{value:.1f}"


def bar_chart(title: str, bars: list[Bar], *, width: int = 640, height: int = 200) -> SafeString:
    """Vertical bars with labels under them (for a day series or a few buckets)."""
    top, bottom, left = 16, 36, 32
    plot_h = height - top - bottom
    peak = max((b.value for b in bars), default=0) or 1
    step = (width - left) / max(len(bars), 1)
    bar_w = max(step * 0.7, 1)
    label_every = max(1, len(bars) // 10)
    parts = []
    for i, bar in enumerate(bars):
        h = plot_h * bar.value / peak
        x = left + i * step + (step - bar_w) / 2
        rect = format_html(
            '<rect class="bar" x="{}" y="{}" width="{}" height="{}"><title>{}: {}</title></rect>',
            _n(x),
            _n(top + plot_h - h),
            _n(bar_w),
            _n(h),
            bar.label,
            bar.value,
        )
        parts.append(_linked(bar, rect))
        if bar.value:
            parts.append(
                format_html(
                    '<text class="value" x="{}" y="{}" text-anchor="middle">{}</text>',
                    _n(x + bar_w / 2),
                    _n(top + plot_h - h - 3),
                    bar.value,
                )
            )
        if i % label_every == 0:
            parts.append(
                format_html(
                    '<text class="label" x="{}" y="{}" text-anchor="middle">{}</text>',
                    _n(x + bar_w / 2),
                    height - bottom + 16,
                    bar.label,
                )
            )
    return _svg(title, bars, width, height, SafeString("".join(parts)), left, top + plot_h)


def hbar_chart(title: str, bars: list[Bar], *, width: int = 640) -> SafeString:
    """Horizontal bars with long labels beside them (for error messages)."""
    row, left = 24, 300
    height = max(len(bars), 1) * row + 8
    peak = max((b.value for b in bars), default=0) or 1
    parts = []
    for i, bar in enumerate(bars):
        y = 4 + i * row
        w = (width - left - 40) * bar.value / peak
        shapes = format_html(
            '<text class="label" x="{}" y="{}" text-anchor="end">{}</text>'
            '<rect class="bar" x="{}" y="{}" width="{}" height="{}"><title>{}: {}</title></rect>'
            '<text class="value" x="{}" y="{}">{}</text>',
            left - 6,
            y + row - 10,
            bar.label[:48],
            left,
            y + 2,
            _n(w),
            row - 8,
            bar.label,
            bar.value,
            _n(left + w + 4),
            y + row - 10,
            bar.value,
        )
        parts.append(_linked(bar, shapes))
    return _svg(title, bars, width, height, SafeString("".join(parts)), left, None)


def _svg(title: str, bars: list[Bar], width: int, height: int, body: SafeString, axis_x: int, axis_y) -> SafeString:
    desc = "; ".join(f"{b.label}: {b.value}" for b in bars) or "no data"
    axis = (
        format_html('<line class="axis" x1="{}" y1="{}" x2="{}" y2="{}"/>', axis_x, axis_y, width, axis_y)
        if axis_y is not None
        else ""
    )
    return format_html(
        '<svg class="chart" role="img" viewBox="0 0 {w} {h}" width="100%" preserveAspectRatio="xMinYMin meet" '
        'xmlns="http://www.w3.org/2000/svg"><title>{t}</title><desc>{d}</desc>{a}{b}</svg>',
        w=width,
        h=height,
        t=title,
        d=desc,
        a=axis,
        b=body,
    )


def legend_table(bars: list[Bar]) -> SafeString:
    """The same numbers as a table, for readers who cannot see the chart."""
    return format_html_join("", "<tr><td>{}</td><td>{}</td></tr>", ((b.label, b.value) for b in bars))
