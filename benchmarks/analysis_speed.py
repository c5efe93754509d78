"""Analysis time against depth (must grow linearly) and the cold start of `cnncalc analyze`.

Run: python benchmarks/analysis_speed.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnncalc.analysis import analyze  # noqa: E402
from cnncalc.spec import parse  # noqa: E402


def deep_chain(depth: int) -> str:
    """A chain of `depth` layers alternating 3x3 conv and ReLU on 16x16x16."""
    return "16x16x16|" + "|".join("3x3x16x16(p=1)" if i % 2 == 0 else "ReLU" for i in range(depth))


def time_analysis(depth: int, repeats: int = 3) -> tuple[float, float]:
    """Median seconds to parse and to analyse a chain of the given depth."""
    text = deep_chain(depth)
    parse_s, analyze_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        graph = parse(text)
        middle = time.perf_counter()
        analyze(graph)
        parse_s.append(middle - start)
        analyze_s.append(time.perf_counter() - middle)
    return statistics.median(parse_s), statistics.median(analyze_s)


def cold_start(repeats: int = 5) -> float:
    """Median wall time of `python -m cnncalc analyze` on a bundled spec, in a fresh process."""
    spec = str(ROOT / "specs" / "titan_x_vs_jetson_nano.yaml")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cnncalc", "analyze", spec, "--format", "json"],
                       cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    print(f"{'depth':>7} {'parse ms':>10} {'analyze ms':>11} {'us/layer':>9}")
    for depth in (100, 1_000, 5_000, 10_000):
        parse_s, analyze_s = time_analysis(depth)
        total = parse_s + analyze_s
        print(f"{depth:>7} {parse_s * 1e3:>10.1f} {analyze_s * 1e3:>11.1f} {total / depth * 1e6:>9.1f}")
    print(f"cold start of `cnncalc analyze` (median of 5): {cold_start() * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
