"""make bench's chart (bench/results.png) is drawn from bench/results.json.

matplotlib comes with the ``bench`` extras only (``make bench`` installs them): without it this is skipped.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from bench.chart import render_chart

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_chart_is_a_png_drawn_from_the_results(tmp_path):
    results = json.loads((BENCH / "results.json").read_text())
    path = render_chart(results, tmp_path / "results.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1320, 550)  # two panels, 12 x 5 inches at 110 dpi


def test_the_committed_chart_is_there_for_the_benchmarks_page():
    assert (BENCH / "results.png").read_bytes()[:4] == b"\x89PNG"
