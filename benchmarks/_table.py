"""Shared helpers of the benchmarks: a ratio table on stdout and the JSON list of rows.

Every benchmark reports rows ``Row(metric, unit, snowg, baseline, higher_is_better)``;
``ratio`` is always snowg / baseline (None when there is no baseline). The JSON
format is the one docs/benchmarks describes: a list of objects with the keys
``metric, unit, snowg, baseline, ratio, higher_is_better``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, List, Optional, TextIO

__all__ = ["Row", "print_table", "write_json", "rows_to_dicts"]


@dataclass(frozen=True)
class Row:
    """One measured figure and the baseline measured beside it in the same run."""

    metric: str
    unit: str
    snowg: float
    baseline: Optional[float] = None
    higher_is_better: bool = True

    @property
    def ratio(self) -> Optional[float]:
        """snowg / baseline, or None without a (non-zero) baseline."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.snowg / self.baseline

    def as_dict(self) -> dict:
        ratio = self.ratio
        return {
            "metric": self.metric,
            "unit": self.unit,
            "snowg": float(self.snowg),
            "baseline": None if self.baseline is None else float(self.baseline),
            "ratio": None if ratio is None else round(ratio, 4),
            "higher_is_better": bool(self.higher_is_better),
        }


def rows_to_dicts(rows: Iterable[Row]) -> List[dict]:
    return [r.as_dict() for r in rows]


def _fmt(x: Optional[float]) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def print_table(rows: Iterable[Row], file: Optional[TextIO] = None) -> None:
    """Print the rows as an aligned table: metric, unit, snowg, baseline, ratio, better."""
    header = ("metric", "unit", "snowg", "baseline", "ratio", "better")
    lines = [header]
    for r in rows:
        ratio = r.ratio
        lines.append(
            (
                r.metric,
                r.unit,
                _fmt(r.snowg),
                _fmt(r.baseline),
                "-" if ratio is None else f"{ratio:.2f}x",
                "higher" if r.higher_is_better else "lower",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        cells = [line[i].ljust(widths[i]) if i < 2 else line[i].rjust(widths[i]) for i in range(len(header))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    print("\n".join(out), file=file)


def write_json(rows: Iterable[Row], path: str) -> None:
    """Write the rows as the JSON list docs/benchmarks describes."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(rows_to_dicts(rows), f, indent=2)
        f.write("\n")
