"""The console's safety, refused on the server: token, cookie, Host, CSRF, read-only, headers, logs.

Each refusal is checked to change nothing (the task stays queued).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from starlette.testclient import TestClient

from sosw.console.web.security import COOKIE
from sosw.console.web.server import ConsoleServer, plan
from sosw.errors import InvalidInputError
from tests.console.conftest import ORIGIN, TOKEN

PAGES = ["/", "/tasks", "/tasks?state=dead", "/jobs", "/dead"]


def queued_task(console):
    return console.tm.create_task(console.labourer(), payload={"n": 1})


def still_queued(console, task) -> bool:
    return console.tm.find_task(task["task_id"])[0] == "open" and console.tm.get_next_for_labourer(
        console.labourer(), cnt=10, only_ids=True
    ) == [task["task_id"]]


def test_the_token_url_sets_an_httponly_strict_cookie_and_leaves_the_url_at_once(make_console):
    # Given a console
    console = make_console()
    fresh = TestClient(console.client.app, base_url=ORIGIN)
    # When the printed URL is opened, with a filter beside the token
    response = fresh.get(f"/tasks?state=dead&token={TOKEN}", follow_redirects=False)
    # Then a redirect drops the token (and keeps the filter), and the cookie is HttpOnly and SameSite=Strict
    assert response.status_code == 303
    assert response.headers["location"] == "/tasks?state=dead"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={TOKEN};") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert response.headers["referrer-policy"] == "no-referrer"
    # And the cookie alone signs in from then on
    assert fresh.get("/tasks?state=dead").status_code == 200


def test_the_redirect_after_the_token_stays_on_the_console(console):
    # A raw request for "//evil.example/" (HTTP clients would read it as another host): sent as the ASGI scope
    import asyncio

    scope = {
        "type": "http",
        "method": "GET",
        "path": "//evil.example/",
        "raw_path": b"//evil.example/",
        "query_string": f"token={TOKEN}".encode(),
        "headers": [(b"host", b"127.0.0.1:8765")],
        "scheme": "http",
        "server": ("127.0.0.1", 8765),
        "client": ("127.0.0.1", 50000),
        "http_version": "1.1",
        "root_path": "",
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    # In a thread of its own: the browser tests' Playwright (session-wide) keeps an event loop running here
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, console.client.app(scope, receive, send)).result()
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = dict(start["headers"])
    assert start["status"] == 303 and headers[b"location"] == b"/evil.example/"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_needs_the_token(console, page):
    anonymous = TestClient(console.client.app, base_url=ORIGIN)
    response = anonymous.get(page)
    assert response.status_code == 401 and "token" in response.text
    wrong = anonymous.get(f"{page}{'&' if '?' in page else '?'}token=not-the-token", follow_redirects=False)
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    anonymous.cookies.set(COOKIE, "not-the-token")
    assert anonymous.get(page).status_code == 401


def test_an_action_without_the_token_is_refused_and_changes_nothing(console):
    task = queued_task(console)
    anonymous = TestClient(console.client.app, base_url=ORIGIN)
    response = anonymous.post(f"/tasks/{task['task_id']}/cancel", headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 401
    assert still_queued(console, task)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.nip.io:8765", "192.168.1.10:8765"])
def test_a_request_for_another_host_name_is_refused_dns_rebinding(console, host):
    # A page of evil.example whose name was rebound to 127.0.0.1 sends its own name in Host
    response = console.client.get("/", headers={"Host": host})
    assert response.status_code == 400


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "[::1]:8765"])
def test_loopback_names_are_answered(console, host):
    assert console.client.get("/", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {},
    ],
    ids=["cross-site", "same-site", "typed-url", "other-origin", "null-origin", "no-origin"],
)
def test_a_state_changing_request_from_another_origin_is_refused(console, headers):
    task = queued_task(console)
    response = console.client.post(f"/tasks/{task['task_id']}/cancel", headers=headers, follow_redirects=False)
    assert response.status_code == 403 and "Refused" in response.text
    assert still_queued(console, task)


def test_the_origin_check_accepts_the_console_own_origin(console):
    # A browser that sends no Sec-Fetch-Site (older ones) sends Origin: the console's own is accepted
    task = queued_task(console)
    response = console.client.post(
        f"/tasks/{task['task_id']}/cancel", headers={"Origin": ORIGIN}, follow_redirects=False
    )
    assert response.status_code == 303
    assert console.tm.find_task(task["task_id"])[0] == "closed"


@pytest.mark.parametrize("path", ["/tasks/{id}/cancel", "/tasks/{id}/prioritise", "/tasks/{id}/redrive"])
def test_no_action_happens_on_a_get(console, path):
    task = queued_task(console)
    response = console.client.get(path.format(id=task["task_id"]))
    assert response.status_code == 405
    assert still_queued(console, task)


def test_read_only_refuses_every_action_and_shows_none(make_console):
    console = make_console(read_only=True)
    task = queued_task(console)
    other = console.tm.create_task(console.labourer(), payload={"n": 2})
    console.kill(other)
    job = console.tm.create_job("alpha", [{"k": 1}], job_id="ro-job")
    posts = [
        (f"/tasks/{task['task_id']}/cancel", None),
        (f"/tasks/{task['task_id']}/prioritise", None),
        (f"/tasks/{other['task_id']}/redrive", None),
        ("/dead/redrive", {"task_id": other["task_id"]}),
        ("/dead/dry-run", {"labourer": "alpha", "error": "Boom"}),
        ("/dead/redrive-all", {"labourer": "alpha", "confirmation": "a" * 32, "dry_run_at": "1", "confirm": "yes"}),
        (f"/jobs/{job['job_id']}/cancel", None),
    ]
    for url, data in posts:
        response = console.post(url, data)
        assert response.status_code == 403 and "read-only" in response.text, url
    assert console.tm.find_task(other["task_id"])[0] == "closed"
    assert console.tm.get_job("ro-job")["state"] != "cancelling"
    # The pages offer no action
    assert '<form method="post"' not in console.client.get(f"/tasks/{task['task_id']}").text
    assert "Redrive" not in console.client.get("/dead").text.replace("Redrive everything", "")
    assert "read-only" in console.client.get("/").text


@pytest.mark.parametrize("page", [*PAGES, "/tasks/nope"])
def test_every_answer_carries_the_csp_and_no_referrer(console, page):
    response = console.client.get(page)
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"


def test_refusals_carry_the_headers_too(console):
    anonymous = TestClient(console.client.app, base_url=ORIGIN)
    response = anonymous.get("/")
    assert response.status_code == 401 and "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_the_token_stays_out_of_the_access_log(make_console, caplog):
    caplog.set_level(logging.INFO, logger="sosw.console.access")
    console = make_console()  # signs in with the token URL
    console.client.get(f"/dead?token={TOKEN}", follow_redirects=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "sosw.console.access"]
    assert any(line.startswith("GET /dead 303") for line in lines)
    assert not [line for line in lines if TOKEN in line or "token" in line]


def test_every_action_is_one_structured_log_line(console, caplog):
    caplog.set_level(logging.INFO, logger="sosw.console.action")
    first, second = (console.tm.create_task(console.labourer(), payload={"n": i}) for i in range(2))
    console.post(f"/tasks/{second['task_id']}/prioritise")
    console.post(f"/tasks/{first['task_id']}/cancel")
    console.post(f"/tasks/{first['task_id']}/cancel")  # not queued any more: refused, and logged so
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "sosw.console.action"]
    assert lines == [
        {"action": "prioritise", "outcome": "done", "count": 1, "task_ids": [second["task_id"]]},
        {"action": "cancel", "outcome": "done", "count": 1, "task_ids": [first["task_id"]]},
        {"action": "cancel", "outcome": "refused: not queued", "count": 0, "task_ids": [first["task_id"]]},
    ]


def test_listening_beyond_loopback_takes_a_flag_and_warns_of_plain_http():
    with pytest.raises(InvalidInputError, match=r"host: 0\.0\.0\.0 is not a loopback address: add --allow-remote"):
        plan("0.0.0.0", allow_remote=False)
    hosts, warning = plan("0.0.0.0", allow_remote=True, allow_hosts=["console.lan"])
    assert "plain HTTP" in warning and "console.lan" in hosts and "0.0.0.0" not in hosts
    hosts, warning = plan("127.0.0.1", allow_remote=False)
    assert warning is None and set(hosts) >= {"127.0.0.1", "localhost", "::1"}


def test_the_server_listens_on_loopback_with_no_access_log_of_its_own(console):
    server = ConsoleServer(console.tm, port=0)
    assert server.host == "127.0.0.1"
    assert server._server.config.access_log is False
    with server:
        assert server.url.startswith(f"http://127.0.0.1:{server.port}/?token=")
        assert len(server.token) >= 40
