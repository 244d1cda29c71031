"""docs/concepts/labourers.md: its health example gives the levels the page says, by the EcologyManager's rule."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sosw.config import ROLE_DEFAULTS
from sosw.labourer import Labourer
from sosw.managers.ecology import EcologyManager
from sosw.orchestrator import DEFAULT_COEFFICIENTS

PAGE = Path(__file__).resolve().parents[2] / "docs" / "concepts" / "labourers.md"


@pytest.mark.parametrize(
    ("errors_a_minute", "level"),
    [(0, 4), (0.4, 3), (5, 3), (5.2, 2), (20, 2), (21, 1), (100, 1), (101, 0)],
)
def test_the_health_example_gives_the_levels_the_page_says(errors_a_minute: float, level: int):
    # Given the page's health_metrics, on a labourer as the TaskManager builds it
    text = PAGE.read_text()
    (block,) = re.findall(r"```json\n(.*?)```", text, re.S)
    labourer = Labourer(id="resize_images", **json.loads("{" + block + "}"))
    # When its metric reads this many errors a minute
    metric = labourer.health_metrics["errors"]
    # Then its level is the page's: High 0, Good up to 5, Moderate up to 20, Poor up to 100, Bad beyond
    assert EcologyManager.feeling_for(labourer, "errors", metric, errors_a_minute) == level
    assert "0 errors a minute is High; up to 5 Good; up to 20 Moderate; up to 100 Poor; more is Bad" in text


def test_the_coefficients_on_the_page_are_the_orchestrators():
    text = PAGE.read_text()
    assert ROLE_DEFAULTS["invocation_number_coefficient"] == DEFAULT_COEFFICIENTS
    assert f"`{DEFAULT_COEFFICIENTS!r}`" in text
