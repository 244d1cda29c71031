"""Every page of the console, its filters and its actions, through Starlette's TestClient (tables on moto)."""

from __future__ import annotations

import datetime
import re
import time

import boto3
import pytest

from sosw.capacity import free_slots, why_not_more
from sosw.console.web.reads import GROUP_SCAN, PAGE_SIZE, encode_cursor
from sosw.leases import LeaseStore


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).isoformat().replace("+00:00", "Z")


def row(html: str, labourer: str) -> str:
    match = re.search(rf'<tr data-labourer="{labourer}">(.*?)</tr>', html, re.S)
    assert match, f"no row for {labourer}"
    return match.group(1)


def field(html: str, name: str) -> str:
    """The text of the element marked ``data-field="name"``, tags left out, spaces collapsed."""
    match = re.search(rf'<(\w+)[^>]*data-field="{name}"[^>]*>(.*?)</\1>', html, re.S)
    assert match, f"no field {name}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(2)).split()).replace(" .", ".")


# ---------------------------------------------------------------------------------------------------- overview


def test_overview_has_one_row_per_labourer_with_its_counts(console):
    tm = console.tm
    for i in range(4):
        tm.create_task(console.labourer(), payload={"n": i})
    console.clock.advance(30)
    dead = tm.create_task(console.labourer("beta"), payload={})
    console.kill(dead)
    html = console.client.get("/").text
    alpha, beta = row(html, "alpha"), row(html, "beta")
    assert field(alpha, "queued") == "4" and field(alpha, "running").startswith("0 / 3")
    assert field(alpha, "oldest") == "30 s"
    assert field(beta, "queued") == "0" and field(beta, "dead") == "1"
    assert field(alpha, "reason") == "starting up to 3 more"
    assert field(beta, "reason") == "nothing queued"
    assert field(alpha, "health") == "4 High"


def test_overview_refresh_returns_the_table_alone(console):
    response = console.client.get("/", headers={"HX-Request": "true"})
    assert response.text.startswith('<div id="live-overview"') and "<html" not in response.text


def test_why_not_more_cap_full(console):
    tm = console.tm
    lab = tm.open_run_window()[0]
    tasks = [tm.create_task(lab, payload={"n": i}) for i in range(5)]
    assert len(tm.claim_tasks(lab, tasks[:3], 3)) == 3
    assert field(row(console.client.get("/").text, "alpha"), "reason") == "cap full: 3 of 3 running"


def test_why_not_more_tasks_delayed(console):
    console.tm.create_delayed_task(console.labourer(), {"n": 1}, 600)
    reason = field(row(console.client.get("/").text, "alpha"), "reason")
    assert reason.startswith("tasks delayed: the next falls due at") and iso(1_800_000_600)[:19] in reason


def test_why_not_more_health_throttled_shows_each_metric_beside_its_thresholds(make_console):
    metric = {
        "details": {"Name": "Latency", "Namespace": "Test", "Statistics": ["Average"], "Period": 60},
        "feelings": {3: 50, 4: 10},
        "feeling_comparison_operator": "__le__",
    }
    labourers = {"alpha": {"max_simultaneous_invocations": 4, "duration": 60, "health_metrics": {"latency": metric}}}
    console = make_console(labourers=labourers)
    when = datetime.datetime.fromtimestamp(console.clock.now() - 30, tz=datetime.UTC)
    boto3.client("cloudwatch").put_metric_data(
        Namespace="Test", MetricData=[{"MetricName": "Latency", "Value": 40.0, "Timestamp": when}]
    )
    tm = console.tm
    lab = tm.open_run_window()[0]
    tasks = [tm.create_task(lab, payload={"n": i}) for i in range(4)]
    assert len(tm.claim_tasks(lab, tasks[:3], 3)) == 3  # 3 running; health 3 (Good) makes the cap 3 of 4
    alpha = row(console.client.get("/").text, "alpha")
    assert field(alpha, "reason") == "health throttled: health 3 (Good) allows 3 of 4"
    assert "latency: 40 (level 3); thresholds 3: ≤ 50, 4: ≤ 10" in field(alpha, "health")


def test_why_not_more_rate_limit_reached(make_console):
    labourers = {"alpha": {"max_simultaneous_invocations": 5, "duration": 60, "max_invocations_per_minute": 2}}
    console = make_console(labourers=labourers)
    console.tm.create_task(console.labourer(), payload={})
    leases = LeaseStore(console.tm.dynamo_db_client, console.config["sosw_orchestrator_leases_table"])
    now = console.clock.now()
    lease = leases.acquire("alpha", "someone", now, 60)
    leases.record_invocations(lease, 2, now)
    assert field(row(console.client.get("/").text, "alpha"), "reason").startswith("rate limit reached: 2 invocations")
    console.clock.advance(61)  # a new minute: the limit allows again
    assert field(row(console.client.get("/").text, "alpha"), "reason") == "starting up to 2 more"


@pytest.mark.parametrize(
    ("args", "queued", "waiting", "reason"),
    [
        ((5, 1.0, 0, None), 3, False, None),
        ((5, 1.0, 5, None), 3, False, "cap_full"),
        ((5, 0.5, 2, None), 3, False, "health"),
        ((5, 0.0, 0, None), 3, False, "health"),
        ((5, 1.0, 1, 0), 3, False, "rate_limit"),
        ((5, 1.0, 5, 0), 0, False, "nothing_queued"),
        ((5, 1.0, 0, None), 0, True, "tasks_delayed"),
    ],
)
def test_the_reason_is_the_orchestrators_own_decision(args, queued, waiting, reason):
    slots = free_slots(*args)
    assert why_not_more(slots, queued=queued, retry_waiting=waiting) == reason


# ---------------------------------------------------------------------------------------------------- tasks


def listed(html: str) -> list[str]:
    return re.findall(r'<td><a href="/tasks/([0-9a-zA-Z._-]+)">', html)


def test_each_state_tab_lists_its_tasks(console):
    tm = console.tm
    lab = tm.open_run_window()[0]
    queued = [tm.create_task(lab, payload={"n": i}) for i in range(3)]
    running = tm.claim_tasks(lab, [queued[0]], 3)[0]
    waiting = tm.create_delayed_task(lab, {"d": 1}, 600)
    dead, cancelled, completed = (tm.create_task(lab, payload={"n": i}) for i in range(3))
    console.kill(dead, "Boom")
    tm.cancel_task(cancelled["task_id"])
    done = tm.claim_tasks(lab, [completed], 3)[0]
    assert tm.complete_and_archive_task(done, attempt=done["attempts"]).outcome.value == "accepted"
    expected = {
        "queued": {queued[1]["task_id"], queued[2]["task_id"]},
        "running": {running["task_id"]},
        "waiting": {waiting["task_id"]},
        "dead": {dead["task_id"]},
        "cancelled": {cancelled["task_id"]},
        "completed": {completed["task_id"]},
    }
    for state, ids in expected.items():
        html = console.client.get(f"/tasks?state={state}&labourer=alpha").text
        assert set(listed(html)) == ids, state
        assert 'aria-current="page">' + {"waiting": "waiting for retry"}.get(state, state) in html


def test_filters_job_error_payload_and_time_say_how_many_were_read_and_matched(console):
    tm = console.tm
    lab = console.labourer()
    tm.create_job("alpha", [{"k": i} for i in range(3)], job_id="job-a")
    plain = [tm.create_task(lab, payload={"color": c, "n": i}) for i, c in enumerate(["red", "blue", "red"])]
    by_job = listed(console.client.get("/tasks?state=queued&labourer=alpha&job=job-a").text)
    assert sorted(by_job) == [f"job-a.{i}" for i in range(3)]
    html = console.client.get("/tasks?state=queued&labourer=alpha&payload_key=color&payload_value=red").text
    assert set(listed(html)) == {plain[0]["task_id"], plain[2]["task_id"]}
    assert "6 read, 2 matched" in html
    console.clock.advance(100)
    late = tm.create_task(lab, payload={"color": "green"})
    html = console.client.get(f"/tasks?state=queued&labourer=alpha&since={iso(console.clock.now() - 10)}").text
    assert listed(html) == [late["task_id"]]
    console.kill(plain[1], "Timeout")
    console.kill(plain[0], "Boom")
    html = console.client.get("/tasks?state=dead&labourer=alpha&error=Timeout").text
    assert listed(html) == [plain[1]["task_id"]] and "2 read, 1 matched" in html
    until = console.client.get(f"/tasks?state=dead&labourer=alpha&until={iso(console.clock.now() - 50)}").text
    assert listed(until) == []


def test_pages_go_on_with_a_dynamodb_cursor(console):
    tm = console.tm
    tm.create_tasks(console.labourer(), [{"n": i} for i in range(PAGE_SIZE + 7)])
    first = console.client.get("/tasks?state=queued&labourer=alpha").text
    cursor = re.search(r'href="/tasks\?([^"]*cursor=[^"]*)" rel="next"', first)
    assert cursor and len(listed(first)) == PAGE_SIZE
    second = console.client.get("/tasks?" + cursor.group(1).replace("&amp;", "&")).text
    assert len(listed(second)) == 7 and not set(listed(second)) & set(listed(first))
    assert "no more" in second


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("state=sleeping", "state: expected one of queued, running, waiting, completed, dead, cancelled"),
        ("labourer=ghost", "labourer: unknown labourer &#39;ghost&#39;"),
        ("since=yesterday", "since: expected an ISO 8601 time in UTC"),
        ("since=2027-01-02T00:00:00Z&until=2027-01-01T00:00:00Z", "since: the time range starts after it ends"),
        ("payload_value=red", "payload_key: a payload value needs its key"),
        ("cursor=bm90LWEta2V5", "cursor: not a cursor this console made"),
        ("cursor=%25%25%25", "cursor: not a cursor this console made"),
    ],
)
def test_bad_filters_are_refused_naming_the_field(console, query, message):
    response = console.client.get(f"/tasks?{query}")
    assert response.status_code == 400 and message in response.text


def test_a_cursor_of_another_shape_is_refused(console):
    bad = encode_cursor({"task_id": {"M": {"x": {"S": "1"}}}})
    assert console.client.get(f"/tasks?cursor={bad}").status_code == 400


def test_dates_are_iso_utc_and_filters_stay_in_the_url(console):
    task = console.tm.create_task(console.labourer(), payload={"n": 1})
    html = console.client.get("/tasks?state=queued&labourer=alpha&payload_key=n").text
    assert f'<time datetime="{iso(1_800_000_000).replace("Z", "+00:00")}">' in html
    assert 'href="/tasks?state=dead&amp;labourer=alpha&amp;payload_key=n"' in html
    assert task["task_id"] in html


# ---------------------------------------------------------------------------------------------------- one task


def test_task_detail_shows_payload_timeline_and_the_actions_that_apply(console):
    tm = console.tm
    task = tm.create_task(console.labourer(), payload={"image": "cat.png"})
    html = console.client.get(f"/tasks/{task['task_id']}").text
    assert "cat.png" in html and field(html, "state") == "queued"
    assert "/cancel" in html and "/prioritise" in html and "/redrive" not in html
    assert "created" in html
    console.kill(task, "Boom", "it broke")
    html = console.client.get(f"/tasks/{task['task_id']}").text
    assert field(html, "state") == "dead (Boom: it broke)" and "/redrive" in html and "/cancel" not in html
    assert "closed" in html
    assert console.client.get("/tasks/no-such-task").status_code == 404


def test_task_actions_cancel_prioritise_redrive(console):
    tm = console.tm
    first, second = (tm.create_task(console.labourer(), payload={"n": i}) for i in range(2))
    response = console.post(f"/tasks/{second['task_id']}/prioritise")
    assert response.headers["location"] == f"/tasks/{second['task_id']}?notice=prioritised"
    assert tm.get_next_for_labourer(console.labourer(), only_ids=True) == [second["task_id"]]
    assert "Task moved to the head" in console.client.get(response.headers["location"]).text
    console.post(f"/tasks/{first['task_id']}/cancel")
    assert tm.find_task(first["task_id"])[0] == "closed"
    response = console.post(f"/tasks/{first['task_id']}/redrive")
    assert response.headers["location"].endswith("notice=redriven")
    assert tm.find_task(first["task_id"])[0] == "open"
    again = console.post(f"/tasks/{first['task_id']}/redrive")
    assert again.headers["location"].endswith("notice=not-redriven")
    assert console.post(f"/tasks/{first['task_id']}/explode").status_code == 404


# ---------------------------------------------------------------------------------------------------- jobs


def test_jobs_list_detail_budget_and_cancel(console):
    tm = console.tm
    tm.create_job("alpha", [{"k": i} for i in range(10)], job_id="job-b", tolerated_failure_percentage=20)
    dead = tm.get_task_by_id("job-b.0")
    console.kill(dead, "Boom")
    assert "job-b" in console.client.get("/jobs").text
    html = console.client.get("/jobs/job-b").text
    assert field(html, "state") == "running" and field(html, "dead").startswith("1")
    assert "its dead tasks" in html and "job=job-b" in html
    assert field(html, "budget").startswith("1 dead task(s) left of 2 (20% of 10")
    assert 'max="10" value="1"' in html
    response = console.post("/jobs/job-b/cancel")
    assert response.status_code == 303
    job = tm.get_job("job-b")
    assert job["cancelled"] == 9 and job["state"] == "cancelled"
    assert field(console.client.get("/jobs/job-b").text, "end-event").startswith("Job Cancelled")
    assert console.post("/jobs/job-b/cancel").status_code == 409
    assert console.client.get("/jobs/no-such-job").status_code == 404
    dead_of_job = console.client.get("/tasks?state=dead&labourer=alpha&job=job-b").text
    assert listed(dead_of_job) == ["job-b.0"]


# ---------------------------------------------------------------------------------------------------- dead tasks


def make_dead(console, count: int, error: str, message: str, labourer: str = "alpha") -> list[str]:
    ids = []
    for i in range(count):
        task = console.tm.create_task(console.labourer(labourer), payload={"i": i, "e": error})
        console.kill(task, error, message)
        ids.append(task["task_id"])
    return ids


def test_dead_tasks_are_grouped_by_labourer_error_and_first_line(console):
    make_dead(console, 3, "Timeout", "took too long\ndetails")
    make_dead(console, 2, "Boom", "it broke\nline 2")
    make_dead(console, 1, "Boom", "other message")
    make_dead(console, 1, "Boom", "it broke", labourer="beta")
    console.tm.cancel_task(console.tm.create_task(console.labourer(), payload={})["task_id"])
    html = console.client.get("/dead").text
    titles = [" ".join(t.split()) for t in re.findall(r"<h2 id=\"g\d+\">(.*?)</h2>", html, re.S)]
    assert titles == [
        'alpha: Timeout: took too long <span class="count">(3)</span>',
        'alpha: Boom: it broke <span class="count">(2)</span>',
        'alpha: Boom: other message <span class="count">(1)</span>',
        'beta: Boom: it broke <span class="count">(1)</span>',
    ]
    assert "Groups of the newest 8 dead task(s) read" in html
    filtered = console.client.get("/dead?labourer=alpha&error=Boom").text
    assert filtered.count('<section class="group"') == 2


def test_the_groups_cover_the_newest_dead_tasks_and_say_so(make_console, monkeypatch):
    monkeypatch.setattr("sosw.console.web.reads.GROUP_SCAN", 3)
    console = make_console()
    make_dead(console, 4, "Boom", "x")
    html = console.client.get("/dead?labourer=alpha").text
    assert "Groups of the newest 3 dead task(s) read" in html and "older ones are not in these groups" in html
    assert GROUP_SCAN == 200


def test_redrive_a_selection(console):
    ids = make_dead(console, 3, "Boom", "x")
    response = console.post("/dead/redrive", {"task_id": [ids[0], ids[2]]})
    assert response.status_code == 200
    assert field(response.text, "moved") == "2 of 2 dead task(s) sent back to their queue."
    assert [console.tm.find_task(i)[0] for i in ids] == ["open", "closed", "open"]
    assert console.post("/dead/redrive", {}).status_code == 400


def test_redrive_everything_matching_after_a_dry_run_and_a_confirmation(console):
    booms = make_dead(console, 7, "Boom", "x")
    others = make_dead(console, 2, "Timeout", "y")
    dry = console.post("/dead/dry-run", {"labourer": "alpha", "error": "Boom"})
    assert dry.status_code == 200 and field(dry.text, "matched").startswith("7 dead task(s) of alpha")
    assert all(console.tm.find_task(i)[0] == "closed" for i in booms)  # the dry run changes nothing
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', dry.text))
    unconfirmed = console.post("/dead/redrive-all", form)
    assert unconfirmed.status_code == 400 and "confirm" in unconfirmed.text
    started = console.post("/dead/redrive-all", {**form, "confirm": "yes"})
    assert started.status_code == 303 and started.headers["location"].startswith("/redrives/")
    run = console.actions.run(started.headers["location"].rsplit("/", 1)[1])
    deadline = time.monotonic() + 30
    while not run.done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.done and run.redriven == 7 and not run.error
    assert all(console.tm.find_task(i)[0] == "open" for i in booms)
    assert all(console.tm.find_task(i)[0] == "closed" for i in others)
    progress = console.client.get(started.headers["location"]).text
    assert field(progress, "redriven") == "7" and "Done." in progress
    # A second click on the same confirmation finds the same run, and starts nothing
    again = console.post("/dead/redrive-all", {**form, "confirm": "yes"})
    assert again.headers["location"] == started.headers["location"]


def test_a_redrive_takes_only_tasks_dead_before_its_dry_run(console):
    make_dead(console, 2, "Boom", "x")
    dry = console.post("/dead/dry-run", {"labourer": "alpha", "error": "Boom"})
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', dry.text))
    console.clock.advance(5)
    later = make_dead(console, 1, "Boom", "x")
    started = console.post("/dead/redrive-all", {**form, "confirm": "yes"})
    run = console.actions.run(started.headers["location"].rsplit("/", 1)[1])
    deadline = time.monotonic() + 30
    while not run.done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.redriven == 2 and console.tm.find_task(later[0])[0] == "closed"


def test_a_large_redrive_runs_in_bounded_batches(make_console):
    console = make_console()
    console.actions.page_size = 4
    make_dead(console, 10, "Boom", "x")
    flt_form = {"labourer": "alpha", "error": "Boom"}
    dry = console.post("/dead/dry-run", flt_form)
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', dry.text))
    started = console.post("/dead/redrive-all", {**form, "confirm": "yes"})
    run = console.actions.run(started.headers["location"].rsplit("/", 1)[1])
    deadline = time.monotonic() + 30
    while not run.done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.redriven == 10 and run.batches >= 3


def test_a_redrive_batch_refused_by_dynamodb_is_retried(make_console):
    console = make_console()
    make_dead(console, 3, "Boom", "x")
    real = console.tm.redrive_task
    refusals = iter([True, True])

    def flaky(task):
        if next(refusals, False):
            from botocore.exceptions import ClientError

            error = {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}
            raise ClientError(error, "TransactWriteItems")
        return real(task)

    console.tm.redrive_task = flaky
    dry = console.post("/dead/dry-run", {"labourer": "alpha", "error": "Boom"})
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', dry.text))
    started = console.post("/dead/redrive-all", {**form, "confirm": "yes"})
    run = console.actions.run(started.headers["location"].rsplit("/", 1)[1])
    deadline = time.monotonic() + 30
    while not run.done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.redriven == 3 and run.retries == 2 and not run.error


def test_a_dry_run_needs_a_labourer(console):
    response = console.post("/dead/dry-run", {"error": "Boom"})
    assert response.status_code == 400 and "labourer" in response.text
    assert console.post("/dead/redrive-all", {"labourer": "alpha"}).status_code == 400
    # A confirmation that no dry run gave starts nothing
    forged = console.post("/dead/redrive-all", {"confirmation": "f" * 32, "confirm": "yes"})
    assert forged.status_code == 400 and "confirmation: no dry run of this console gave it" in forged.text
    assert console.client.get("/redrives/nope").status_code == 404


def test_completions_per_minute_come_from_the_workers_metric(console):
    # Given 5 completions reported in the last whole minute and 2 twenty minutes before (CloudWatch)
    now = console.clock.now()
    minute = now // 60 * 60
    cloudwatch = boto3.client("cloudwatch")
    for at, value in ((minute - 60 + 5, 5.0), (minute - 20 * 60, 2.0)):
        when = datetime.datetime.fromtimestamp(at, tz=datetime.UTC)
        cloudwatch.put_metric_data(
            Namespace="sosw",
            MetricData=[
                {
                    "MetricName": "worker_completed",
                    "Dimensions": [{"Name": "labourer_id", "Value": "alpha"}],
                    "Value": value,
                    "Timestamp": when,
                }
            ],
        )
    html = console.client.get("/").text
    # Then the overview shows 5 a minute, and the hour's chart peaks at 5
    rate = field(row(html, "alpha"), "rate")
    assert rate.startswith("5") and "up to 5" in row(html, "alpha")
    assert field(row(html, "beta"), "rate").startswith("0")
