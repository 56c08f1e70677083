"""Inline SVG charts for the HTML report: deterministic text (fixed number formats, no ids from memory,
no dates), everything placed inside its canvas.

Text cannot be measured here (the browser lays it out), so labels are placed by a conservative width
estimate (`text_width`, above DejaVu Sans and the usual sans-serif faces) and cut with "…" where they
would not fit; the browser test of the report checks the drawn extents against each canvas.
"""
from __future__ import annotations

import html
import math

#: shapes of the markers by precision (fp32 circle, fp16 square, int8 triangle; other flavours diamond)
SHAPES = {"fp32": "circle", "fp16": "square", "int8": "triangle"}
#: colour-blind-safe categorical colours (Okabe-Ito, then darker tones)
PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#7f7f7f", "#000000", "#8c564b",
           "#1b7837"]
FONT = 11  # px: tick labels and legends


def esc(v) -> str:
    return html.escape(str(v), quote=True)


def num(v: float, nd: int = 2) -> str:
    """A coordinate or value in SVG text: fixed decimals, no trailing zeros, never "-0"."""
    s = f"{v:.{nd}f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


_NARROW = set("il.,:;'|!()[]{}tfjI ")
_WIDE = set("MWmw%@#")


def text_width(s: str, size: float = FONT) -> float:
    """A generous estimate of the width of ``s`` at ``size`` px in a sans-serif face."""
    w = 0.0
    for ch in str(s):
        if ch in _NARROW:
            w += 0.36
        elif ch in _WIDE or ch.isupper():
            w += 0.86
        elif ord(ch) > 0x2000:  # arrows, dashes, symbols
            w += 1.0
        else:
            w += 0.62
    return w * size


def fit(s: str, width: float, size: float = FONT) -> str:
    """``s`` cut with "…" to fit ``width`` px (estimated)."""
    s = str(s)
    if text_width(s, size) <= width:
        return s
    while s and text_width(s + "…", size) > width:
        s = s[:-1]
    return s + "…"


class Svg:
    """An SVG canvas with a title (its accessible name) and a few primitives."""

    def __init__(self, width: float, height: float, label: str, cls: str = "chart"):
        self.w, self.h, self.label, self.cls = width, height, label, cls
        self.parts: list[str] = []

    def add(self, s: str) -> None:
        self.parts.append(s)

    def text(self, x, y, s, size=FONT, anchor="start", weight=None, fill="#222", max_width=None, cls=None,
             rotate=False) -> None:
        """Text at (x, y) (baseline), cut to ``max_width`` (default: what is left of the canvas)."""
        if max_width is None:
            max_width = {"start": self.w - x, "end": x, "middle": 2 * min(x, self.w - x)}[anchor] - 2
            if rotate:
                max_width = {"start": y, "end": self.h - y, "middle": 2 * min(y, self.h - y)}[anchor] - 2
        s = fit(s, max_width, size)
        attrs = f'x="{num(x)}" y="{num(y)}" font-size="{num(size)}"'
        if anchor != "start":
            attrs += f' text-anchor="{anchor}"'
        if weight:
            attrs += f' font-weight="{weight}"'
        if fill != "#222":
            attrs += f' fill="{fill}"'
        if cls:
            attrs += f' class="{cls}"'
        if rotate:
            attrs += f' transform="rotate(-90 {num(x)} {num(y)})"'
        self.add(f"<text {attrs}>{esc(s)}</text>")

    def line(self, x1, y1, x2, y2, stroke="#999", width=1.0, dash=None, extra="") -> None:
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<line x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}" stroke="{stroke}" '
                 f'stroke-width="{num(width)}"{d}{extra}/>')

    def rect(self, x, y, w, h, fill="none", stroke="none", width=1.0, dash=None, title=None, extra="") -> None:
        d = f' stroke-dasharray="{dash}"' if dash else ""
        body = f"<title>{esc(title)}</title>" if title else ""
        tag = f'<rect x="{num(x)}" y="{num(y)}" width="{num(max(w, 0))}" height="{num(max(h, 0))}" fill="{fill}" ' \
              f'stroke="{stroke}" stroke-width="{num(width)}"{d}{extra}'
        self.add(f"{tag}>{body}</rect>" if body else f"{tag}/>")

    def polyline(self, pts, stroke="#0072b2", width=1.5, dash=None) -> None:
        d = f' stroke-dasharray="{dash}"' if dash else ""
        p = " ".join(f"{num(x)},{num(y)}" for x, y in pts)
        self.add(f'<polyline points="{p}" fill="none" stroke="{stroke}" stroke-width="{num(width)}"{d}/>')

    def marker(self, x, y, shape="circle", color="#0072b2", filled=True, r=5.0, title=None) -> None:
        fill = color if filled else "#fff"
        body = f"<title>{esc(title)}</title>" if title else ""
        common = f'fill="{fill}" stroke="{color}" stroke-width="1.6"'
        if shape == "circle":
            el = f'<circle cx="{num(x)}" cy="{num(y)}" r="{num(r)}" {common}>'
            end = "</circle>"
        else:
            if shape == "square":
                pts = [(x - r, y - r), (x + r, y - r), (x + r, y + r), (x - r, y + r)]
            elif shape == "triangle":
                pts = [(x, y - r * 1.2), (x + r * 1.1, y + r * 0.8), (x - r * 1.1, y + r * 0.8)]
            else:  # diamond
                pts = [(x, y - r * 1.25), (x + r, y), (x, y + r * 1.25), (x - r, y)]
            el = f'<polygon points="{" ".join(f"{num(a)},{num(b)}" for a, b in pts)}" {common}>'
            end = "</polygon>"
        self.add(el + body + end)

    def render(self) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" class="{self.cls}" viewBox="0 0 {num(self.w)} {num(self.h)}" '
                f'width="{num(self.w)}" height="{num(self.h)}" role="img" aria-label="{esc(self.label)}">'
                f"<title>{esc(self.label)}</title>" + "".join(self.parts) + "</svg>")


# --------------------------------------------------------------------------- axes

def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    out, v = [], start
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def tick_label(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return num(v, 1)
    if a >= 0.01:
        return num(v, 3)
    return f"{v:.0e}".replace("e-0", "e-")


class Axes:
    """A plot area inside an Svg: data -> pixel mapping (linear or log10 on y), ticks, grid and labels."""

    def __init__(self, svg: Svg, x0, y0, x1, y1, xlim, ylim, ylog=False, xlog=False):
        self.svg, self.x0, self.y0, self.x1, self.y1 = svg, x0, y0, x1, y1
        self.xlim, self.ylim, self.ylog, self.xlog = xlim, ylim, ylog, xlog

    def _t(self, v, lim, log):
        if log:
            v, lim = math.log10(max(v, 1e-12)), (math.log10(lim[0]), math.log10(lim[1]))
        return (v - lim[0]) / ((lim[1] - lim[0]) or 1.0)

    def px(self, x) -> float:
        return self.x0 + self._t(x, self.xlim, self.xlog) * (self.x1 - self.x0)

    def py(self, y) -> float:
        return self.y1 - self._t(y, self.ylim, self.ylog) * (self.y1 - self.y0)

    def inside(self, x, y) -> tuple[float, float]:
        return min(max(self.px(x), self.x0), self.x1), min(max(self.py(y), self.y0), self.y1)

    def frame(self, xticks, yticks, xlabel="", ylabel="", title="", xfmt=tick_label, yfmt=tick_label) -> None:
        s = self.svg
        for v in yticks:
            y = self.py(v)
            s.line(self.x0, y, self.x1, y, stroke="#e3e3e3")
            s.text(self.x0 - 4, y + 4, yfmt(v), anchor="end", fill="#555", max_width=self.x0 - 20)
        for v in xticks:
            x = self.px(v)
            s.line(x, self.y0, x, self.y1, stroke="#eeeeee")
            s.text(x, self.y1 + 14, xfmt(v), anchor="middle", fill="#555", max_width=60)
        s.rect(self.x0, self.y0, self.x1 - self.x0, self.y1 - self.y0, stroke="#888")
        if xlabel:
            s.text((self.x0 + self.x1) / 2, self.y1 + 30, xlabel, anchor="middle", max_width=self.x1 - self.x0 + 40)
        if ylabel:
            s.text(12, (self.y0 + self.y1) / 2, ylabel, anchor="middle", rotate=True)
        if title:
            s.text((self.x0 + self.x1) / 2, self.y0 - 8, title, anchor="middle", weight="bold", size=12,
                   max_width=self.x1 - self.x0)


def log_ticks(lo: float, hi: float) -> list[float]:
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return [10.0 ** e for e in range(a, b + 1)]


def legend(svg: Svg, items: list[tuple[str, dict]], x0: float, y0: float, width: float) -> float:
    """Legend entries (label, marker kwargs or {"line": dash}) flowed in rows within ``width``; returns
    the y below the last row."""
    x, y = x0, y0
    for label, style in items:
        w = 18 + text_width(label) + 14
        if x > x0 and x + w > x0 + width:
            x, y = x0, y + 18
        if "line" in style:
            svg.line(x, y - 4, x + 14, y - 4, stroke=style.get("color", "#555"), width=1.5, dash=style["line"])
        else:
            svg.marker(x + 7, y - 4, **{k: v for k, v in style.items() if k != "title"}, r=4.5)
        svg.text(x + 18, y, label, max_width=min(width - 18, x0 + width - x - 18))
        x += w
    return y + 10


def legend_height(items: list[tuple[str, dict]], width: float) -> float:
    x, rows = 0.0, 1
    for label, _ in items:
        w = 18 + text_width(label) + 14
        if x > 0 and x + w > width:
            x, rows = 0.0, rows + 1
        x += w
    return rows * 18 + 10
