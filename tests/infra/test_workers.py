"""Imported workers: the stack says exactly what their owner must grant, and strict mode insists."""

from __future__ import annotations

import json

import pytest
from aws_cdk import Environment

from infra.config import ConfigError
from tests.infra.conftest import Synth, cdk_context, synthesize

IMPORTED = {"legacy": {"arn": "arn:aws:lambda:eu-west-1:123456789012:function:legacy_worker"}}


def test_synth_prints_the_exact_policy_an_unconfirmed_imported_worker_needs(prod: Synth):
    # Given the prod stage imports 'by_name' without confirmation, and 'legacy' with it
    assert "Imported worker 'by_name'" in prod.stderr
    assert "Imported worker 'legacy'" not in prod.stderr
    printed = prod.stderr.split("permissions_confirmed': true:\n", 1)[1]
    policy = json.loads(printed[: printed.index("\n}\n") + 2])
    # Then it is one statement: invoke the WorkerAssistant and the failure handler, nothing else
    assert policy["Statement"] == [
        {
            "Sid": "SoswReportsAndFailureDestination",
            "Effect": "Allow",
            "Action": "lambda:InvokeFunction",
            "Resource": [
                "arn:<partition>:lambda:<region>:<account>:function:prod_sosw_worker_assistant",
                "arn:<partition>:lambda:<region>:<account>:function:prod_sosw_failure_handler",
            ],
        }
    ]


def test_the_policy_is_also_an_output_with_the_deployed_arns(prod: Synth):
    outputs = prod.template.to_json()["Outputs"]
    (key,) = [k for k in outputs if k.startswith("WorkersWorkerbynameOwnerPolicy")]
    value = outputs[key]["Value"]
    assert "Fn::Join" in value
    text = json.dumps(value)
    assert prod.function(prod.config.functions["worker_assistant"].name)[0] in text
    assert prod.function(prod.config.functions["failure_handler"].name)[0] in text


def test_strict_synth_fails_until_the_owner_confirms_the_policy(tmp_path):
    with pytest.raises(ConfigError, match=r"(?s)strict: Imported worker 'legacy'.*\"lambda:InvokeFunction\""):
        synthesize(tmp_path / "a", {**cdk_context(workers=IMPORTED), "strict": "true"})
    # Given the owner's confirmation, strict synth passes
    confirmed = {"legacy": {**IMPORTED["legacy"], "permissions_confirmed": True}}
    synth = synthesize(tmp_path / "b", {**cdk_context(workers=confirmed), "strict": "true"})
    assert "Imported worker" not in synth.stderr
    # And the printed ARNs come from the worker's own ARN (same account and region)
    unconfirmed = synthesize(tmp_path / "c", cdk_context(workers=IMPORTED))
    assert "arn:aws:lambda:eu-west-1:123456789012:function:dev_sosw_worker_assistant" in unconfirmed.stderr


def test_a_worker_in_another_account_than_a_pinned_stack_fails_synth(tmp_path):
    env = Environment(account="999999999999", region="eu-west-1")
    with pytest.raises(ConfigError, match=r"sosw.workers.legacy.arn.*account 123456789012"):
        synthesize(tmp_path, cdk_context(workers=IMPORTED), env=env)
