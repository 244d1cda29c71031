"""The whole stack on one machine: DynamoDB (Local), SSM/SNS/CloudWatch (moto's server), and every
function of ``lambdas/`` behind the local Lambda endpoint, wired the way the CDK stack wires them.

The Orchestrator and the Scavenger are invoked through the Lambda endpoint like the schedules do;
workers report through the WorkerAssistant; crashes reach the failure handler as on-failure records.
Child processes find every service through the standard ``AWS_ENDPOINT_URL_<SERVICE>`` variables.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from sosw import aws
from sosw.local.dynamodb_local import DynamoDBLocal, free_port
from sosw.local.lambda_server import FunctionSpec, LocalLambda
from sosw.local.tables import create_tables, prefixed_config
from sosw.managers.task import TaskManager

LAMBDAS_DIR = Path(__file__).resolve().parents[3] / "lambdas"
CONFIG_PARAMETER = "/sosw/local/config"
ASSISTANT = "sosw_worker_assistant"
FAILURE_HANDLER = "sosw_failure_handler"
ORCHESTRATOR = "sosw_orchestrator"
SCAVENGER = "sosw_scavenger"


@dataclass(frozen=True)
class WorkerSpec:
    """A worker Lambda of the local stack and its labourer settings."""

    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    code_dir: str = str(LAMBDAS_DIR / "worker")
    timeout: float = 10.0
    concurrency: int = 4


class LocalStack:
    """``with LocalStack(workers=[WorkerSpec("resize", {...})]) as stack: stack.run_orchestrator()``."""

    def __init__(
        self,
        workers: list[WorkerSpec],
        *,
        dynamodb_endpoint: str | None = None,
        table_prefix: str = "",
        config: Mapping[str, Any] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        control_concurrency: int = 1,
    ) -> None:
        self.workers = workers
        self.control_concurrency = control_concurrency
        self._dynamodb_endpoint = dynamodb_endpoint
        self._ddb: DynamoDBLocal | None = None
        self._moto: Any = None
        self.lambda_: LocalLambda | None = None
        self._saved_env: dict[str, str | None] = {}
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="sosw-local-"))
        labourers = {w.name: {**w.settings, "arn": w.name} for w in workers}
        base = {
            "labourers": labourers,
            "orchestrator_lease_settle_seconds": 0,
            "orchestrator_safety_seconds": 1,
            **(config or {}),
        }
        self.config = prefixed_config(table_prefix, base)
        self.topic_arn: str | None = None

    # -------------------------------------------------------------- lifecycle

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self._dynamodb_endpoint is None:
            self._ddb = DynamoDBLocal().start()
            self._dynamodb_endpoint = self._ddb.endpoint_url
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request

        moto_port = free_port()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
        self._moto.start()
        moto_url = f"http://127.0.0.1:{moto_port}"
        lambda_port = free_port()
        env = {
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            "AWS_ENDPOINT_URL_DYNAMODB": self._dynamodb_endpoint,
            "AWS_ENDPOINT_URL_LAMBDA": f"http://127.0.0.1:{lambda_port}",
            "AWS_ENDPOINT_URL_SSM": moto_url,
            "AWS_ENDPOINT_URL_SNS": moto_url,
            "AWS_ENDPOINT_URL_CLOUDWATCH": moto_url,
        }
        self._set_env(env)
        create_tables(aws.dynamodb_client(), self.config)
        sns = boto3.client("sns")
        self.topic_arn = sns.create_topic(Name="sosw-dead-tasks")["TopicArn"]
        self.dead_letters_queue = boto3.client("sqs", endpoint_url=moto_url).create_queue(QueueName="sosw-dead")
        queue_arn = f"arn:aws:sqs:{env['AWS_DEFAULT_REGION']}:123456789012:sosw-dead"
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)
        boto3.client("ssm").put_parameter(
            Name=CONFIG_PARAMETER, Type="String", Value=json.dumps(self.config), Overwrite=True
        )
        common = {
            **env,
            "SOSW_CONFIG_PARAMETER": CONFIG_PARAMETER,
            "POWERTOOLS_SERVICE_NAME": "sosw",
            "POWERTOOLS_METRICS_NAMESPACE": "sosw",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }
        functions = [
            FunctionSpec(
                ORCHESTRATOR,
                str(LAMBDAS_DIR / "orchestrator"),
                timeout=60,
                environment=common,
                concurrency=self.control_concurrency,
            ),
            FunctionSpec(
                SCAVENGER,
                str(LAMBDAS_DIR / "scavenger"),
                timeout=60,
                environment={**common, "SOSW_DEAD_LETTER_TOPIC_ARN": self.topic_arn},
                concurrency=self.control_concurrency,
            ),
            FunctionSpec(
                ASSISTANT, str(LAMBDAS_DIR / "worker_assistant"), timeout=10, environment=common, concurrency=4
            ),
            FunctionSpec(FAILURE_HANDLER, str(LAMBDAS_DIR / "failure_handler"), timeout=10, environment=common),
        ]
        worker_env = {**env, "SOSW_WORKER_ASSISTANT_FUNCTION": ASSISTANT, "POWERTOOLS_SERVICE_NAME": "worker"}
        for worker in self.workers:
            cooldown = float(worker.settings.get("cooldown", 300))
            functions.append(
                FunctionSpec(
                    worker.name,
                    worker.code_dir,
                    timeout=worker.timeout,
                    environment=worker_env,
                    on_failure=FAILURE_HANDLER,
                    concurrency=worker.concurrency,
                    max_event_age=max(cooldown, 1.0),
                )
            )
        self.lambda_ = LocalLambda(functions, port=lambda_port, log_dir=self.log_dir).start()

    def stop(self) -> None:
        if self.lambda_:
            self.lambda_.stop()
            self.lambda_ = None
        if self._moto:
            self._moto.stop()
            self._moto = None
        if self._ddb:
            self._ddb.stop()
            self._ddb = None
        self._restore_env()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _set_env(self, env: Mapping[str, str]) -> None:
        for key, value in env.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    # -------------------------------------------------------------- driving it

    def task_manager(self, **kwargs: Any) -> TaskManager:
        return TaskManager(self.config, **kwargs)

    def _invoke(self, name: str) -> dict[str, Any]:
        response = aws.lambda_client().invoke(FunctionName=name, InvocationType="RequestResponse", Payload=b"{}")
        body = json.loads(response["Payload"].read() or b"{}")
        if response.get("FunctionError"):
            raise RuntimeError(f"{name} failed: {body}")
        return body

    def run_orchestrator(self) -> dict[str, Any]:
        """One scheduled run of the Orchestrator Lambda."""
        return self._invoke(ORCHESTRATOR)

    def run_scavenger(self) -> dict[str, Any]:
        """One scheduled run of the Scavenger Lambda."""
        return self._invoke(SCAVENGER)

    def dead_letters(self) -> list[dict[str, Any]]:
        """The dead-task notifications published so far (drained from the SNS topic's test queue)."""
        sqs = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL_SNS"])
        url = self.dead_letters_queue["QueueUrl"]
        messages = []
        while True:
            batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                body = json.loads(message["Body"])
                messages.append(json.loads(body.get("Message", "{}")))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
