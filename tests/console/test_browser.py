"""The console in a real browser (Debian's chromium, driven by Playwright) against the local stack.

One chromium for every test (the session's ``browser``); one local stack and its consoles for the module.
Every page visited is checked with axe-core (no serious or critical violation), and every request the
browser makes stays on loopback. ``SOSW_SCREENSHOTS_DIR`` (e.g. docs/images) keeps a few screenshots.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sosw import cli
from sosw.console.logs import LocalLogs
from sosw.console.web.server import ConsoleServer
from sosw.local.stack import LocalStack, WorkerSpec

pytestmark = pytest.mark.integration
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = "/usr/bin/chromium"
# cooldown: the start guard runs a delivery up to this old, however slowly a busy machine starts a worker
SETTINGS = {"duration": 3, "cooldown": 60, "max_duration": 5, "never_retry_errors": ["RuntimeError"]}


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One chromium launch for all the browser tests (``make test`` installs Debian's chromium)."""
    if not Path(CHROMIUM).is_file():
        if os.environ.get("SOSW_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (make test does it)")
        pytest.skip(f"{CHROMIUM} is missing (make test installs it)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


class Site:
    """The stack, its consoles, and what the browser did there (pages checked, hosts reached)."""

    def __init__(self, stack: LocalStack, console: ConsoleServer, read_only: ConsoleServer, state: Path) -> None:
        self.stack = stack
        self.console = console
        self.read_only = read_only
        self.state = state
        self.hosts: set[str] = set()
        self.checked: dict[str, list[str]] = {}
        self.tm = stack.task_manager()

    def drive(self, until, rounds: int = 120) -> None:
        """Run the schedules (as `sosw local` does every minute) until ``until()`` holds."""
        for _ in range(rounds):
            # One pass a round: a run that follows the work would linger 20 s after the last task closed
            self.stack.run_orchestrator(follow=False)
            self.stack.run_scavenger()
            if until():
                return
            time.sleep(0.3)
        raise AssertionError("the stack did not get there")


@pytest.fixture(scope="module")
def site(dynamodb_local, tmp_path_factory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("console-browser")
    workers = [
        # Its Lambda timeout leaves room for a cold start on a busy machine beside the 6 s task of the first test
        WorkerSpec(
            "resize",
            {**SETTINGS, "max_simultaneous_invocations": 4, "duration": 30, "max_duration": 30},
            concurrency=4,
            timeout=30,
        ),
        WorkerSpec("flaky", {**SETTINGS, "max_simultaneous_invocations": 2}, concurrency=2),
    ]
    with LocalStack(
        workers,
        dynamodb_endpoint=dynamodb_local.endpoint_url,
        table_prefix=f"web{os.getpid()}_",
        log_dir=folder / "logs",
    ) as stack:
        # The CLI's --local reads the running stack from its state file, as after `sosw local`
        state = folder / cli.STATE_FILE
        state.parent.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        state.write_text(json.dumps({"config": stack.config, "env": env, "log_dir": str(stack.log_dir)}))
        logs = LocalLogs(stack.log_dir)
        with (
            ConsoleServer(stack.task_manager(), log_source=logs, where="local stack", refresh_seconds=2) as console,
            ConsoleServer(stack.task_manager(), log_source=logs, read_only=True, refresh_seconds=2) as read_only,
        ):
            yield Site(stack, console, read_only, folder)


@pytest.fixture
def page(browser, site, request):
    """A fresh browser context (no cookie), whose every request is recorded by host."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.on("request", lambda r: site.hosts.add(urlsplit(r.url).hostname or r.url))
    opened = context.new_page()
    yield opened
    context.close()


def accessible(page, site: Site) -> None:
    """axe-core on the page as it is now: no serious or critical violation."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    site.checked.setdefault(urlsplit(page.url).path, []).extend(v["id"] for v in bad)
    assert not bad, json.dumps([{k: v[k] for k in ("id", "impact", "help")} for v in bad], indent=1)


#: Where the screenshots go, resolved now (a test changes its working directory to run the CLI).
SCREENSHOTS = Path(os.environ["SOSW_SCREENSHOTS_DIR"]).resolve() if os.environ.get("SOSW_SCREENSHOTS_DIR") else None


def shot(page, name: str) -> None:
    if SCREENSHOTS is not None:
        # (the log folder is this machine's temporary folder: masked)
        masked = [page.locator(".log-source")]
        page.screenshot(path=str(SCREENSHOTS / f"howto-console-{name}.png"), full_page=True, mask=masked)


def sign_in(page, server: ConsoleServer, path: str = "/") -> None:
    page.goto(server.url)
    assert "token" not in page.url  # the token left the address bar at once
    if path != "/":
        page.goto(f"http://127.0.0.1:{server.port}{path}")


def test_the_overview_shows_the_labourers_and_a_task_created_with_the_cli_appears(page, site, monkeypatch, capsys):
    # Given the overview of the local stack, open in the browser
    sign_in(page, site.console)
    expect(page.locator('tr[data-labourer="resize"]')).to_be_visible()
    expect(page.locator('tr[data-labourer="flaky"]')).to_be_visible()
    queued = page.locator('tr[data-labourer="resize"] [data-field="queued"]')
    expect(queued).to_have_text("0")
    expect(page.locator('tr[data-labourer="resize"] [data-field="reason"]')).to_have_text("nothing queued")
    accessible(page, site)
    # When a task is created with the CLI
    monkeypatch.chdir(site.state)
    assert cli.main(["--local", "create", "resize", "--payload", '{"sleep": 6, "echo": "from the cli"}']) == 0
    task_id = capsys.readouterr().out.strip()
    # Then it appears without a reload (the live refresh): queued, or already running (the stack's stream
    # wakes dispatch at once), for the 6 s it works
    page.wait_for_function(
        """() => {
            const cell = (f) => document.querySelector(`tr[data-labourer="resize"] [data-field="${f}"]`);
            return cell("queued").textContent.trim() === "1" || cell("running").textContent.trim().startsWith("1 /");
        }""",
        timeout=15_000,
    )
    shot(page, "overview")
    # And its page shows its payload; once it has run, its attempt and its worker's log lines
    site.drive(lambda: site.tm.find_task(task_id)[0] == "closed")
    page.goto(f"http://127.0.0.1:{site.console.port}/tasks/{task_id}")
    expect(page.locator('[data-field="state"]')).to_have_text("completed")
    expect(page.locator("pre.log")).to_contain_text("Task completed")
    expect(page.locator("pre.json").first).to_contain_text('"echo": "from the cli"')
    accessible(page, site)
    shot(page, "task")


def test_the_refresh_pauses_and_stops_while_the_tab_is_hidden(page, site):
    sign_in(page, site.console)
    body = page.locator("body")
    expect(body).to_have_attribute("data-refresh", "on")
    # Paused with the keyboard alone
    page.focus("#refresh-pause")
    page.keyboard.press("Enter")
    expect(body).to_have_attribute("data-refresh", "off")
    expect(page.locator("#refresh-pause")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Enter")
    expect(body).to_have_attribute("data-refresh", "on")
    # Hidden tab: no refresh; visible again: refreshing
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    expect(body).to_have_attribute("data-refresh", "off")
    page.evaluate(
        "Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    expect(body).to_have_attribute("data-refresh", "on")
    # The interval is the user's to change, and kept
    page.select_option("#refresh-interval", "10")
    page.reload()
    expect(page.locator("#refresh-interval")).to_have_value("10")
    page.select_option("#refresh-interval", "2")
    # Times in UTC, local time on request
    utc = page.locator("caption time").first.inner_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", utc)
    page.click("#time-zone")
    expect(page.locator("#time-zone")).to_have_attribute("aria-pressed", "true")
    page.click("#time-zone")


def test_a_job_followed_to_its_end(page, site):
    # Given a job of 6 tasks
    job = site.tm.create_job("resize", [{"sleep": 0.05, "echo": i} for i in range(6)], job_id="browser-job")
    assert job["total"] == 6
    sign_in(page, site.console, "/jobs")
    accessible(page, site)
    # When the browser follows it from the list, by keyboard
    page.get_by_role("link", name="browser-job").focus()
    page.keyboard.press("Enter")
    expect(page.locator('[data-field="state"]')).to_have_text("running")
    expect(page.get_by_role("button", name="Cancel the job")).to_be_visible()
    accessible(page, site)
    site.drive(lambda: site.tm.get_job("browser-job")["state"] == "finished")
    # Then its page comes to the end by itself, with its counts and its end event
    expect(page.locator('[data-field="state"]')).to_have_text("finished", timeout=15_000)
    expect(page.locator('[data-field="completed"]')).to_have_text("6")
    expect(page.locator('[data-field="dead"]')).to_have_text("0")
    expect(page.locator('[data-field="end-event"]')).to_contain_text("Job Finished")
    expect(page.get_by_role("button", name="Cancel the job")).to_have_count(0)  # an ended job offers no cancel
    shot(page, "job")


def test_a_group_of_dead_tasks_redriven_by_error_runs_again(page, site):
    # Given 3 tasks whose first attempt fails with RuntimeError, never retried: dead
    tm = site.tm
    ids = tm.create_tasks(tm.get_labourer("flaky"), [{"fail_attempts": 1, "echo": i} for i in range(3)])
    site.drive(lambda: all(tm.find_task(i)[0] == "closed" for i in ids))
    sign_in(page, site.console, "/dead?labourer=flaky")
    group = page.locator('section.group[data-error="RuntimeError"]')
    expect(group.locator("h2")).to_contain_text("flaky: RuntimeError: failing on purpose (attempt 1) (3)")
    accessible(page, site)
    shot(page, "dead")
    # When everything matching is redriven, after a dry run, by keyboard alone
    group.get_by_role("button", name=re.compile("Redrive every flaky task dead with RuntimeError")).focus()
    page.keyboard.press("Enter")
    expect(page.locator('[data-field="matched"]')).to_contain_text("3 dead task(s) of flaky")
    accessible(page, site)
    page.get_by_label(re.compile("Send these 3 back")).focus()
    page.keyboard.press("Space")
    page.get_by_role("button", name="Redrive", exact=True).focus()
    page.keyboard.press("Enter")
    expect(page.locator('[data-field="done"]')).to_have_text("Done.", timeout=15_000)
    expect(page.locator('[data-field="redriven"]')).to_have_text("3")
    accessible(page, site)
    # Then they run again (their second attempt succeeds) and show completed
    site.drive(lambda: all(str(tm.find_task(i)[1].get("labourer_id_task_status")).endswith("_1") for i in ids))
    page.goto(f"http://127.0.0.1:{site.console.port}/tasks?state=completed&labourer=flaky")
    for task_id in ids:
        expect(page.get_by_role("link", name=task_id)).to_be_visible()
    accessible(page, site)
    page.get_by_role("link", name=ids[0]).click()
    expect(page.locator("h3").filter(has_text="Attempt 2")).to_contain_text("completed")
    expect(page.locator("h3").filter(has_text="Attempt 1")).to_contain_text("failed")


def test_every_tab_and_filter_page_is_accessible(page, site):
    sign_in(page, site.console)
    for state in ("queued", "running", "waiting", "completed", "dead", "cancelled"):
        page.goto(f"http://127.0.0.1:{site.console.port}/tasks?state={state}&labourer=flaky&error=RuntimeError")
        expect(page.locator("p.reads")).to_be_visible()
        accessible(page, site)
    page.goto(f"http://127.0.0.1:{site.console.port}/tasks?since=not-a-time")
    expect(page.locator(".error")).to_contain_text("since: expected an ISO 8601 time")
    accessible(page, site)


def waiting_task(site: Site) -> dict:
    """A task the stack leaves alone for 10 minutes (a delayed one: waiting, and cancellable)."""
    return site.tm.create_delayed_task(site.tm.get_labourer("resize"), {"sleep": 0}, 600)


def test_an_action_is_refused_in_read_only(page, site):
    task = waiting_task(site)
    sign_in(page, site.read_only, f"/tasks/{task['task_id']}")
    expect(page.locator(".badge")).to_have_text("read-only")
    assert page.get_by_role("button", name="Cancel").count() == 0
    accessible(page, site)
    # A POST made anyway, from the console's own page, is refused by the server
    status = page.evaluate(f"fetch('/tasks/{task['task_id']}/cancel', {{method: 'POST'}}).then(r => r.status)")
    assert status == 403
    assert site.tm.find_task(task["task_id"])[0] == "waiting"
    site.tm.cancel_task(task["task_id"])  # leave the queue as found


def test_an_action_is_refused_without_the_token(page, site):
    task = waiting_task(site)
    page.goto(f"http://127.0.0.1:{site.console.port}/tasks/{task['task_id']}")
    expect(page.locator("h1")).to_have_text("Sign-in needed")
    status = page.evaluate(f"fetch('/tasks/{task['task_id']}/cancel', {{method: 'POST'}}).then(r => r.status)")
    assert status == 401
    assert site.tm.find_task(task["task_id"])[0] == "waiting"
    site.tm.cancel_task(task["task_id"])


def test_an_action_is_refused_from_another_origin(page, site):
    # Given a signed-in browser, and a page of another origin (another port of this machine: same site, so
    # even the SameSite=Strict cookie goes along) that posts a form to the console
    task = waiting_task(site)
    sign_in(page, site.console)
    port = site.console.port
    evil = f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}/"
    form = (
        f'<html lang="en"><body><form id="f" method="post" action="http://127.0.0.1:{port}/tasks/{task["task_id"]}'
        '/cancel"></form><script>document.getElementById("f").submit()</script></body></html>'
    )
    page.route(evil, lambda route: route.fulfill(status=200, content_type="text/html", body=form))
    # When it is opened
    with page.expect_navigation(url=re.compile(rf"127\.0\.0\.1:{port}/tasks/")):
        page.goto(evil)
    # Then the console refuses, and the task is still queued
    expect(page.locator("h1")).to_have_text("Refused")
    expect(page.locator("body")).to_contain_text("another site (same-site)")
    assert site.tm.find_task(task["task_id"])[0] == "waiting"
    site.tm.cancel_task(task["task_id"])


def test_the_browser_never_left_loopback(site):
    # (runs last in this module: every request of the tests above, axe's included)
    assert site.hosts and site.hosts <= {"127.0.0.1"}, site.hosts
