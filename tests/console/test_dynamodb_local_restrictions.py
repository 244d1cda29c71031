"""What the local stack restricts of DynamoDB Local (docs/howto/console.md, "What the local stack restricts").

Its default ``-cors *`` let any web page in the browser call it; started by this project, a preflight from
any page's origin gets no ``Access-Control-Allow-Origin``, so the browser never sends the request.
"""

from __future__ import annotations

import urllib.request

import pytest

from sosw.local.dynamodb_local import CORS_ORIGIN

pytestmark = pytest.mark.integration


def preflight(url: str, origin: str) -> dict[str, str]:
    request = urllib.request.Request(
        url,
        method="OPTIONS",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-amz-target,authorization",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return {k.lower(): v for k, v in response.headers.items()}


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:8765", "null"])
def test_no_web_page_may_call_dynamodb_local(dynamodb_local, origin):
    headers = preflight(dynamodb_local.endpoint_url, origin)
    assert "access-control-allow-origin" not in headers


def test_only_the_reserved_origin_is_allowed_and_telemetry_is_off(dynamodb_local):
    assert CORS_ORIGIN.endswith(".invalid")  # RFC 2606: no page can have it
    assert preflight(dynamodb_local.endpoint_url, CORS_ORIGIN)["access-control-allow-origin"] == CORS_ORIGIN
    command = dynamodb_local._process.args
    assert "-disableTelemetry" in command and command[command.index("-cors") + 1] == CORS_ORIGIN
