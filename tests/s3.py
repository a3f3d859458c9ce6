"""A real S3-compatible server for tests: moto's standalone server, started as its own process on loopback.

    server = start_s3_server()          # python -m moto.server on 127.0.0.1:<free port>
    server.make_bucket("team")          # through boto3, over HTTP
    monkeypatch.setenv(...)             # s3_client_env(server): endpoint and dummy credentials
    server.stop()                       # or pause() / resume() (SIGSTOP / SIGCONT: a server that hangs)

The client under test is s3fs over real HTTP; nothing in the client is stubbed. Skips (with the reason) only when
moto is not installed (pip install 'editledger[dev]')."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest

DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "editledger-test", "AWS_SECRET_ACCESS_KEY": "editledger-test-secret",
                     "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class S3Server:
    process: subprocess.Popen
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, service: str = "s3", **credentials: str) -> Any:
        import boto3

        keys = {"aws_access_key_id": credentials.get("key", DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"]),
                "aws_secret_access_key": credentials.get("secret", DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])}
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1", **keys)

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)  # still accepts connections (the kernel's backlog), never answers

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_s3_server(extra_env: dict[str, str] | None = None) -> S3Server:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        pytest.skip("moto[server] is not installed: pip install 'editledger[dev]'")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               env={**os.environ, **DUMMY_CREDENTIALS, **(extra_env or {})},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = S3Server(process, port)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=2).close()
            return server
        except (urllib.error.URLError, ConnectionError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"moto server on port {port} did not start") from None
            time.sleep(0.2)


def s3_client_env(server: S3Server) -> dict[str, str]:
    """What a machine of the team has in its environment: the endpoint and credentials (never in the ledger)."""
    return {**DUMMY_CREDENTIALS, "EDITLEDGER_S3_ENDPOINT_URL": server.endpoint, "EDITLEDGER_STORE_TIMEOUT": "5"}


@pytest.fixture(scope="session")
def s3_server():
    server = start_s3_server()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for name, value in s3_client_env(s3_server).items():
        monkeypatch.setenv(name, value)
    for name in ("EDITLEDGER_CACHE_DIR", "EDITLEDGER_STORE", "EDITLEDGER_DB", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    return s3_server
