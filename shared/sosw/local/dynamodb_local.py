"""Start and stop DynamoDB Local (AWS's own emulator) on a free loopback port.

Used by the integration tests, the benchmark and the local run. The emulator is fetched by
``scripts/fetch-dynamodb-local.sh`` (``make`` does it) into ``.cache/dynamodb-local/emulator``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import boto3
from botocore.config import Config

#: The only origin DynamoDB Local answers cross-origin requests from: a reserved name (RFC 2606) no page has.
CORS_ORIGIN = "http://sosw-local.invalid"
DEFAULT_DIR = Path(__file__).resolve().parents[3] / ".cache" / "dynamodb-local" / "emulator"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DynamoDBLocal:
    """``with DynamoDBLocal() as ddb: ddb.endpoint_url`` — an in-memory DynamoDB Local."""

    def __init__(self, emulator_dir: str | os.PathLike[str] | None = None, port: int | None = None) -> None:
        self.emulator_dir = Path(emulator_dir or os.environ.get("DYNAMODB_LOCAL_DIR") or DEFAULT_DIR)
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> DynamoDBLocal:
        jar = self.emulator_dir / "DynamoDBLocal.jar"
        if not jar.is_file():
            raise RuntimeError(f"DynamoDB Local is not installed at {self.emulator_dir}: run `make dynamodb-local`")
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("Java is missing: DynamoDB Local needs a Java 17 runtime")
        command = [
            java,
            f"-Djava.library.path={self.emulator_dir / 'DynamoDBLocal_lib'}",
            "-jar",
            str(jar),
            "-inMemory",
            "-port",
            str(self.port),
            # It would report usage over the internet: nothing here calls the internet at run time.
            "-disableTelemetry",
            # Its default, "*", lets any web page the browser shows call it: no page needs to (the console
            # reads it from its server), so only an origin that can't exist is allowed.
            "-cors",
            CORS_ORIGIN,
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = boto3.client(
            "dynamodb",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=5),
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"DynamoDB Local exited with {self._process.returncode}: {err[-2000:]}")
            try:
                client.list_tables()
                return self
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"DynamoDB Local did not answer on {self.endpoint_url} within {timeout} s"
                    ) from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
