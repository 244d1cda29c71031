"""docs/operations/alarms.md has a section, saying what to do, for every alarm the stack creates."""

from __future__ import annotations

import re
from pathlib import Path

from infra.config import CONTROL_FUNCTIONS
from tests.infra.conftest import Synth

PAGE = Path(__file__).resolve().parents[2] / "docs" / "operations" / "alarms.md"


def test_the_alarms_page_has_a_section_for_every_alarm_of_the_stack(dev: Synth):
    # Given the alarms of the synthesized dev stack, one function or labourer name put as the page puts it
    names = {a["Properties"]["AlarmName"] for a in dev.of_type("AWS::CloudWatch::Alarm").values()}
    workers = {worker.name for worker in dev.config.workers}
    general = set()
    for name in names:
        assert name.startswith("sosw-dev-"), name
        key = name.removeprefix("sosw-dev-")
        head, _, tail = key.partition("-")
        if head in CONTROL_FUNCTIONS and tail == "errors":
            key = "<function>-errors"
        elif key.removesuffix("-queue-age") in workers:
            key = "<labourer>-queue-age"
        general.add(key)
    assert {"<function>-errors", "<labourer>-queue-age", "dispatch-lagging", "dead-tasks"} <= general
    # Then each is the title of a section of the page (or shares one), with what to do under it
    text = PAGE.read_text()
    titled = {name for heading in re.findall(r"^## (.+)$", text, re.M) for name in re.findall(r"`([^`]+)`", heading)}
    assert general - titled == set()
    for heading in re.findall(r"^## .+$", text, re.M):
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        assert len(section.split()) > 30, heading
    # and the page names every control function whose errors raise an alarm
    for function in CONTROL_FUNCTIONS:
        assert f"`{function}`" in text, function
