"""sosw's Orchestrator on sosw's three tables alone: ours runs there too, as sosw's does.

sosw users who try this package before deploying the stack have the tasks, retry and closed tables and
nothing else. The slot counters, the lease per labourer and the rate limit all live on the stack's leases
table; without it the Orchestrator counts running tasks from the index (sosw's way, so the cap is only as
exact as sosw's), and says so once, in one line that names the table and how the stack creates it.
"""

from __future__ import annotations

import logging

import boto3
import pytest

from sosw.managers.ecology import EcologyManager
from sosw.managers.task import TaskManager
from sosw.orchestrator import Orchestrator
from tests.dropin.differences import declared

pytestmark = pytest.mark.integration


def test_the_orchestrator_runs_on_sosws_three_tables_without_the_leases_table(
    sosw_config, clock, lambda_endpoint, caplog
):
    # Given sosw's three tables only: the leases table (and the stack's others) don't exist
    client = boto3.client("dynamodb")
    for key in ("sosw_orchestrator_leases_table", "sosw_tasks_meta_table"):
        client.delete_table(TableName=sosw_config[key])
    manager = TaskManager(sosw_config, clock=clock, ecology_client=EcologyManager(sosw_config, clock=clock))
    alpha = manager.get_labourer("alpha")  # cap 5
    manager.create_tasks(alpha, [{"n": i} for i in range(8)])
    clock.advance(1)
    # When sosw's way runs it: one Orchestrator run
    with caplog.at_level(logging.WARNING):
        report = Orchestrator(manager).run(labourer_ids=["alpha"])
    # Then it invoked up to the cap, counted from the index, and left the rest queued
    assert report.labourers["alpha"].error == ""
    assert report.invoked == 5 == len(lambda_endpoint.invocations)
    assert manager.get_count_of_running_tasks_for_labourer(alpha) == 5
    assert manager.get_length_of_queue_for_labourer(alpha) == 3
    # And it said once, in one line, which table is missing and how the stack creates it
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("No leases table '")]
    assert len(lines) == 1 and sosw_config["sosw_orchestrator_leases_table"] in lines[0], declared("tables-alone")
    assert "cdk deploy" in lines[0] and "\n" not in lines[0]
    # When a second run comes while those 5 run: nothing more is invoked (the index counts them)
    Orchestrator(manager).run(labourer_ids=["alpha"])
    assert len(lambda_endpoint.invocations) == 5
