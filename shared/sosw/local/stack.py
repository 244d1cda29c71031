"""The whole stack on one machine: DynamoDB (Local), SSM/SNS/CloudWatch/S3/EventBridge (moto's server), and
every function of ``lambdas/`` behind the local Lambda endpoint, wired the way the CDK stack wires them.

Jobs: ``submit_job`` invokes the Scheduler asynchronously with sosw's job event; ``upload_job`` puts a job
file in the jobs bucket and delivers the "Object Created" event the stack's EventBridge rule would; the
end events the functions publish land on moto's EventBridge, and ``job_events()`` reads them back (a rule
on source ``sosw`` sends them to a queue).

The Orchestrator and the Scavenger are invoked through the Lambda endpoint like the schedules do;
workers report through the WorkerAssistant; crashes reach the failure handler as on-failure records.
Child processes find every service through the standard ``AWS_ENDPOINT_URL_<SERVICE>`` variables.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from sosw import aws
from sosw.labourer import function_name
from sosw.local.dynamodb_local import DynamoDBLocal, free_port
from sosw.local.emf import EmfForwarder
from sosw.local.lambda_server import FunctionSpec, LocalLambda, stage_code
from sosw.local.moto_dynamodb import SerialMotoServer
from sosw.local.streams import StreamMapping, StreamPoller
from sosw.local.tables import prefixed_config
from sosw.local.template import TemplateFunction, TemplateStack, synthesize
from sosw.local.template import load as load_template
from sosw.managers.task import TaskManager
from sosw.schema import table_schemas

LAMBDAS_DIR = Path(__file__).resolve().parents[3] / "lambdas"
CONFIG_PARAMETER = "/sosw/local/config"
ASSISTANT = "sosw_worker_assistant"
FAILURE_HANDLER = "sosw_failure_handler"
ORCHESTRATOR = "sosw_orchestrator"
SCAVENGER = "sosw_scavenger"
ORCHESTRATOR_CONCURRENCY = 5
SCHEDULER = "sosw_scheduler"
JOBS_BUCKET = "sosw-jobs-local"


@dataclass(frozen=True)
class WorkerSpec:
    """A worker Lambda of the local stack and its labourer settings."""

    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    code_dir: str = str(LAMBDAS_DIR / "worker")
    timeout: float = 10.0
    concurrency: int = 4


def programmatic_stack(
    workers: list[WorkerSpec], table_prefix: str = "", config: Mapping[str, Any] | None = None
) -> TemplateStack:
    """A stack described in code (for tests that need their own labourers): the same parts the template has."""
    labourers = {w.name: {**w.settings, "arn": w.name} for w in workers}
    full = prefixed_config(table_prefix, {"labourers": labourers, **(config or {})})
    common = {
        "SOSW_CONFIG_PARAMETER": CONFIG_PARAMETER,
        "POWERTOOLS_SERVICE_NAME": "sosw",
        "POWERTOOLS_METRICS_NAMESPACE": "sosw",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }

    def control(role: str, name: str, timeout: float, retries: int = 0, **env: Any) -> TemplateFunction:
        code = str(LAMBDAS_DIR / role)
        environment = {**common, **env}
        return TemplateFunction(
            role, name, code, "app.handler", timeout, environment, retry_attempts=retries, role=role
        )

    wake = {"SOSW_ORCHESTRATOR_FUNCTION": ORCHESTRATOR}
    wake_both = {**wake, "SOSW_SCAVENGER_FUNCTION": SCAVENGER}
    functions = [
        control("orchestrator", ORCHESTRATOR, 300, **wake),
        control("scavenger", SCAVENGER, 60, SOSW_DEAD_LETTER_TOPIC_ARN={"Ref": "DeadTasks"}, **wake),
        control("worker_assistant", ASSISTANT, 10, retries=2, **wake_both),  # as the CDK stack configures them
        control("failure_handler", FAILURE_HANDLER, 10, retries=2, **wake_both),
        control("scheduler", SCHEDULER, 60, retries=2),
    ]
    worker_env = {"SOSW_WORKER_ASSISTANT_FUNCTION": ASSISTANT, "POWERTOOLS_SERVICE_NAME": "worker"}
    for worker in workers:
        functions.append(
            TemplateFunction(
                worker.name,
                worker.name,
                worker.code_dir,
                "app.handler",
                worker.timeout,
                worker_env,
                on_failure=FAILURE_HANDLER,
                # Lambda accepts 60 s at the least; the start guard refuses what is older than the cooldown
                max_event_age=max(float(worker.settings.get("cooldown", 300)), 60.0),
            )
        )
    schemas = table_schemas(full)
    tables = [schema.create_table_kwargs() for schema in schemas.values()]
    streamed = {schemas["tasks"].name, schemas["retry"].name}  # as the CDK stack creates them: new rows wake dispatch
    for table in tables:
        if table["TableName"] in streamed:
            table["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    return TemplateStack(
        tables=tables,
        streams=[StreamMapping(schemas[role].name, ORCHESTRATOR) for role in ("tasks", "retry")],
        functions=functions,
        config_parameter=CONFIG_PARAMETER,
        config=full,
        topics={"DeadTasks": f"{table_prefix}sosw-dead-tasks"},
        schedules={ORCHESTRATOR: 60, SCAVENGER: 60},
    )


class LocalStack:
    """``with LocalStack(workers=[WorkerSpec("resize", {...})]) as stack: stack.run_orchestrator()``.

    ``LocalStack.from_template(cdk_out)`` runs the synthesized stack instead of one described in code.
    """

    def __init__(
        self,
        workers: list[WorkerSpec] | None = None,
        *,
        dynamodb_endpoint: str | None = None,
        table_prefix: str = "",
        config: Mapping[str, Any] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        control_concurrency: int = 1,
        spec: TemplateStack | None = None,
        worker_concurrency: Mapping[str, int] | None = None,
    ) -> None:
        if spec is None:
            spec = programmatic_stack(workers or [], table_prefix, config)
            worker_concurrency = {w.name: w.concurrency for w in workers or []}
        # Local runs move faster than the deployed schedules: no pause between leases, a short margin.
        spec.config = {"orchestrator_lease_settle_seconds": 0, "orchestrator_safety_seconds": 1, **spec.config}
        self.spec = spec
        self.config = spec.config
        self.control_concurrency = control_concurrency
        self.worker_concurrency = dict(worker_concurrency or {})
        self._dynamodb_endpoint = dynamodb_endpoint
        self._ddb: DynamoDBLocal | SerialMotoServer | None = None
        self._moto: Any = None
        self.lambda_: LocalLambda | None = None
        self._saved_env: dict[str, str | None] = {}
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="sosw-local-"))
        # moto keeps one backend per process, whatever its servers: this stack's queues and rule are its own,
        # so what an earlier stack of the same process published is never read as this one's.
        self._local_id = uuid.uuid4().hex[:8]
        self._run_client: Any = None
        self.topic_arn: str | None = None
        self.stream_pollers: list[StreamPoller] = []
        #: The functions' EMF metrics, put on the local CloudWatch (moto's) as CloudWatch would extract them.
        self.metrics: EmfForwarder | None = None
        #: Function name -> the code folder it runs from, watched for changes (``from_template(project_dir=)``).
        self.sources: dict[str, str] = {}
        #: Imported labourers stood in for by a stub, and its behaviour.
        self.stubs: dict[str, str] = {}
        self._code_root: Path | None = None

    @classmethod
    def from_template(
        cls,
        cdk_out: str | os.PathLike[str],
        *,
        project_dir: str | os.PathLike[str] | None = None,
        stubs: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> LocalStack:
        """The synthesized stack: tables, functions, config and schedules read from its template.

        With ``project_dir``, each worker runs from a copy of its code folder there, re-staged when the
        folder changes (the next invocation runs the new code). ``stubs`` stand in for imported workers:
        ``{labourer: "completes" | "fails" | "sleeps:S"}`` (:mod:`sosw.local.stub`).
        """
        spec = load_template(Path(cdk_out))
        labourers = spec.config.get("labourers", {})
        concurrency = {
            function_name(str(settings.get("arn", name))): int(settings.get("max_simultaneous_invocations") or 1)
            for name, settings in labourers.items()
        }
        stack = cls(spec=spec, worker_concurrency=concurrency, **kwargs)
        if project_dir is not None:
            stack.sources = {
                f.name: str(Path(project_dir) / f.source) for f in spec.functions if f.role == "worker" and f.source
            }
        for labourer, behaviour in (stubs or {}).items():
            stack._add_stub(labourer, behaviour)
        return stack

    def imported_workers(self) -> dict[str, str]:
        """Labourers whose function is not in the stack (declared by ``arn``): ``{labourer: arn}``."""
        stubbed = {function_name(str(self.config["labourers"][labourer].get("arn"))) for labourer in self.stubs}
        names = {f.name for f in self.spec.functions} - stubbed
        return {
            labourer: str(settings.get("arn", labourer))
            for labourer, settings in self.config.get("labourers", {}).items()
            if function_name(str(settings.get("arn", labourer))) not in names
        }

    def _add_stub(self, labourer: str, behaviour: str) -> None:
        from sosw.local.stub import parse_behaviour

        imported = self.imported_workers()
        if labourer not in imported:
            raise ValueError(
                f"--stub {labourer}: not an imported worker of this stack (imported: {sorted(imported) or 'none'})"
            )
        try:
            parse_behaviour(behaviour)
        except ValueError as exc:
            raise ValueError(f"--stub {labourer}: {exc}") from exc
        settings = self.config["labourers"][labourer]
        name = function_name(imported[labourer])
        self.spec.functions.append(
            TemplateFunction(
                f"Stub{labourer}",
                name,
                str(Path(__file__).resolve().parent),
                "sosw.local.stub.handler",
                float(settings.get("max_duration") or settings.get("duration") or 60),
                {
                    "SOSW_CONFIG_PARAMETER": self.spec.config_parameter,
                    "SOSW_WORKER_ASSISTANT_FUNCTION": self.spec.function("worker_assistant").name,
                    "POWERTOOLS_SERVICE_NAME": "worker",
                    "SOSW_STUB": behaviour,
                },
                on_failure=self.spec.function("failure_handler").name,
                max_event_age=max(float(settings.get("cooldown", 300)), 60.0),
            )
        )
        self.stubs[labourer] = behaviour

    @property
    def orchestrator(self) -> str:
        return self.spec.function("orchestrator").name

    @property
    def scavenger(self) -> str:
        return self.spec.function("scavenger").name

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
            self._ddb = local_dynamodb().start()
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
            "AWS_ENDPOINT_URL_SQS": moto_url,
            "AWS_ENDPOINT_URL_CLOUDWATCH": moto_url,
            "AWS_ENDPOINT_URL_EVENTBRIDGE": moto_url,
            "AWS_ENDPOINT_URL_S3": moto_url,
        }
        self._set_env(env)
        # The functions publish their metrics as a deployed Lambda does (EMF lines, which emf.py forwards to the
        # local CloudWatch), whatever the caller's environment says.
        env = {**env, "POWERTOOLS_METRICS_DISABLED": "false"}
        client = aws.dynamodb_client()
        for table in self.tables():
            client.create_table(**table)
        waiter = client.get_waiter("table_exists")
        for table in self.tables():
            waiter.wait(TableName=table["TableName"], WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
        sns = boto3.client("sns")
        refs = {logical: sns.create_topic(Name=name)["TopicArn"] for logical, name in self.spec.topics.items()}
        boto3.client("ssm").put_parameter(
            Name=self.spec.config_parameter, Type="String", Value=json.dumps(self.config), Overwrite=True
        )
        functions = []
        for function in self.spec.functions:
            environment = {**env, **{k: _resolve(v, refs, k, function.name) for k, v in function.environment.items()}}
            if function.role == "scavenger":
                self.topic_arn = environment.get("SOSW_DEAD_LETTER_TOPIC_ARN")
            if function.role == "worker":
                concurrency = self.worker_concurrency.get(function.name, 4)
            elif function.role == "worker_assistant":
                concurrency = 12  # every worker calls it synchronously before working
            elif function.role == "orchestrator":
                # As the deployed reserved concurrency: a run that follows the work, and wake-ups beside it.
                concurrency = max(self.control_concurrency, ORCHESTRATOR_CONCURRENCY)
            else:
                concurrency = self.control_concurrency
            code_dir, source_dir = function.code_dir, self.sources.get(function.name)
            if source_dir:
                code_dir = str(self._stage(function.name, source_dir))
            functions.append(
                FunctionSpec(
                    function.name,
                    code_dir,
                    source_dir=source_dir,
                    handler=function.handler,
                    timeout=function.timeout,
                    environment=environment,
                    on_failure=function.on_failure,
                    concurrency=concurrency,
                    max_event_age=function.max_event_age,
                    retry_attempts=function.retry_attempts,
                )
            )
        sqs = boto3.client("sqs")
        self.dead_letters_queue = sqs.create_queue(QueueName=f"sosw-dead-letters-{self._local_id}")
        if self.topic_arn:
            queue_arn = sqs.get_queue_attributes(
                QueueUrl=self.dead_letters_queue["QueueUrl"], AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)
        self._record_job_events(sqs)
        boto3.client("s3").create_bucket(Bucket=JOBS_BUCKET)
        self.lambda_ = LocalLambda(functions, port=lambda_port, log_dir=self.log_dir).start()
        self.metrics = EmfForwarder(self.log_dir, aws.cloudwatch_client()).start()
        self.stream_pollers = [StreamPoller(m, self._dynamodb_endpoint).start() for m in self.spec.streams]

    def tables(self) -> list[dict[str, Any]]:
        """The template's tables, and those it adopts (``tables.adopt``: used by name, so not in the template),
        created from sosw's definitions (:mod:`sosw.schema`) as the existing tables would be."""
        names = {table["TableName"] for table in self.spec.tables}
        adopted = [
            schema.create_table_kwargs() for schema in table_schemas(self.config).values() if schema.name not in names
        ]
        return [*self.spec.tables, *adopted]

    def _stage(self, name: str, source_dir: str) -> Path:
        """A function's own copy of its code folder (two workers staged from equal folders share no files)."""
        if self._code_root is None:
            self._code_root = Path(tempfile.mkdtemp(prefix="sosw-local-code-"))
        target = self._code_root / name
        stage_code(source_dir, target)
        return target

    def _record_job_events(self, sqs: Any) -> None:
        """What the functions publish on EventBridge (source ``sosw``) goes to a queue this stack reads."""
        queue = sqs.create_queue(QueueName=f"sosw-job-events-{self._local_id}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = boto3.client("events")
        bus = self.config.get("job_event_bus") or "default"
        if bus != "default":
            events.create_event_bus(Name=bus)
        rule = f"sosw-job-events-{self._local_id}"
        events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": ["sosw"]}))
        events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
        self._job_events_queue = queue
        self._job_events: list[dict[str, Any]] = []

    def stop(self) -> None:
        for poller in self.stream_pollers:
            poller.stop()
        self.stream_pollers = []
        if self.lambda_:
            self.lambda_.stop()
            self.lambda_ = None
        if self.metrics is not None:
            with contextlib.suppress(Exception):  # a figure lost at the stop costs a chart point only
                self.metrics.stop()
            self.metrics = None
        if self._code_root is not None:
            shutil.rmtree(self._code_root, ignore_errors=True)
            self._code_root = None
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

    def _invoke(self, name: str, event: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A run, waited for as long as a control function may run (EventBridge itself does not wait)."""
        if self._run_client is None:  # one client for every run (creating one costs tens of milliseconds)
            longest = max((f.timeout for f in self.spec.functions if f.role != "worker"), default=60.0)
            self._run_client = boto3.client(
                "lambda", config=aws.LAMBDA_INVOKE_CONFIG.merge(Config(read_timeout=int(longest) + 10))
            )
        response = self._run_client.invoke(
            FunctionName=name, InvocationType="RequestResponse", Payload=json.dumps(event or {})
        )
        body = json.loads(response["Payload"].read() or b"{}")
        if response.get("FunctionError"):
            raise RuntimeError(f"{name} failed: {body}")
        return body

    def run_orchestrator(self, *, follow: bool = True) -> dict[str, Any]:
        """A scheduled run of the Orchestrator Lambda (it follows the work until there is none);
        ``follow=False``: one pass, which fills each labourer's free slots once."""
        return self._invoke(self.orchestrator, None if follow else {"follow": False})

    def run_scavenger(self) -> dict[str, Any]:
        """One scheduled run of the Scavenger Lambda."""
        return self._invoke(self.scavenger)

    def schedule_tick(self) -> None:
        """What the minute schedules do: invoke the Orchestrator and the Scavenger asynchronously (EventBridge
        doesn't wait for a run, so a run that follows the work doesn't hold up the next tick)."""
        client = aws.lambda_client()
        for name in (self.orchestrator, self.scavenger):
            client.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")

    @property
    def scheduler(self) -> str:
        return self.spec.function("scheduler").name

    def submit_job(self, event: Mapping[str, Any]) -> None:
        """Invoke the Scheduler asynchronously with sosw's job event (as a sosw user's code does)."""
        aws.lambda_client().invoke(FunctionName=self.scheduler, InvocationType="Event", Payload=json.dumps(event))

    def upload_job(self, key: str, body: str | bytes) -> None:
        """Upload a job file and deliver the S3 "Object Created" event the stack's EventBridge rule sends."""
        response = boto3.client("s3").put_object(Bucket=JOBS_BUCKET, Key=key, Body=body)
        event = {
            "version": "0",
            "source": "aws.s3",
            "detail-type": "Object Created",
            "detail": {
                "bucket": {"name": JOBS_BUCKET},
                "object": {"key": key, "etag": response["ETag"].strip('"'), "sequencer": os.urandom(8).hex()},
            },
        }
        aws.lambda_client().invoke(FunctionName=self.scheduler, InvocationType="Event", Payload=json.dumps(event))

    def job_events(self) -> list[dict[str, Any]]:
        """Every job end event published so far (EventBridge envelopes: ``detail-type``, ``detail``, ...)."""
        sqs = boto3.client("sqs")
        while True:
            batch = sqs.receive_message(QueueUrl=self._job_events_queue, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return list(self._job_events)
            for message in batch:
                self._job_events.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self._job_events_queue, ReceiptHandle=message["ReceiptHandle"])

    def dead_letters(self) -> list[dict[str, Any]]:
        """The dead-task notifications published so far (drained from the SNS topic's test queue)."""
        sqs = boto3.client("sqs")
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


def project_stack(
    project_dir: str | os.PathLike[str],
    *,
    overrides: Mapping[str, str] | None = None,
    stubs: Mapping[str, str] | None = None,
    cdk_out: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> LocalStack:
    """The user's own stack: the project's cdk.json synthesized (with ``-c`` overrides), its workers run from
    their code folders, imported ones stood in for by ``stubs``. Not started yet."""
    out = Path(cdk_out or tempfile.mkdtemp(prefix="sosw-local-cdk-"))
    synthesize(out, project_dir=Path(project_dir), overrides=overrides, local=True)
    return LocalStack.from_template(out, project_dir=project_dir, stubs=stubs, **kwargs)


def local_dynamodb() -> DynamoDBLocal | SerialMotoServer:
    """DynamoDB Local where Java and the emulator are here, else moto's server one request at a time."""
    ddb = DynamoDBLocal()
    if shutil.which("java") and (ddb.emulator_dir / "DynamoDBLocal.jar").is_file():
        return ddb
    print("DynamoDB Local needs Java and `make dynamodb-local`: using moto's server (one request at a time)")
    return SerialMotoServer()


def _resolve(value: Any, refs: Mapping[str, str], key: str, function: str) -> str:
    """A template environment value: a string, or a Ref to a resource the local stack created."""
    if isinstance(value, str):
        return value
    ref = value.get("Ref") if isinstance(value, Mapping) else None
    if ref in refs:
        return refs[ref]
    raise RuntimeError(f"{function}: environment variable {key} = {value!r} can't be resolved locally")
