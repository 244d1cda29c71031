"""The differential suite: the same calls to sosw 0.7.51 (from PyPI, in its own virtualenv) and to this package,
on tables made from sosw's own definitions, on one DynamoDB Local (``tests/dropin/differential.py`` says how).

Every seed method and every point of the drop-in issue is called; return values and the rows left compare as
"sosw's fields are there with sosw's values"; each deliberate difference is declared with why, and asserted.
"""

from __future__ import annotations

import ast
import itertools
import json
import time
from typing import Any

import pytest

from tests.dropin.differences import declared
from tests.dropin.differential import Call, Differs, run_both, same

pytestmark = pytest.mark.integration

DELTA = 31_557_600
STEP = 1000
_prefixes = itertools.count()
LABOURERS = {
    "l1": {"arn": "l1", "max_simultaneous_invocations": 5},
    "l2": {"arn": "l2", "max_simultaneous_invocations": 2},
}
L1 = {"$labourer": "l1"}


# ------------------------------------------------------------------ the deliberate differences


def _create_numbers(s: dict[str, Any], o: dict[str, Any]) -> bool:
    mine, theirs = o["result"], s["result"]
    numbers = ("greenfield", "created_at", "attempts")
    if not all(isinstance(theirs[k], str) and isinstance(mine[k], int | float) for k in numbers):
        return False
    if abs(float(theirs["created_at"]) - mine["created_at"]) > 30:
        return False
    if (float(theirs["greenfield"]), float(theirs["attempts"])) != (mine["greenfield"], mine["attempts"]):
        return False
    others = set(theirs) - {*numbers, "payload"}
    return json.loads(theirs["payload"]) == json.loads(mine["payload"]) and all(theirs[k] == mine[k] for k in others)


#: create_task returns the task it wrote: sosw's has its numbers as text ("2000"), ours as numbers.
CREATE_NUMBERS = Differs(declared("create-numbers"), _create_numbers)
#: Moves and claims answer whether they were done; sosw's return None.
ANSWERS = Differs(declared("answers"), lambda s, o: s.get("result", 0) is None and o.get("result") is True)
CLAIM_RETURNS_TASK = Differs(
    declared("answers"),
    lambda s, o: s["result"] is None and o["result"]["attempts"] == 1,
)
INVOKE_ANSWERS = Differs(declared("answers"), lambda s, o: s["result"] is None and o["result"] == "invoked")
SECOND_CLAIM = Differs(
    declared("second-claim"),
    lambda s, o: (
        s.get("exception") == "ConditionalCheckFailedException" and o.get("exception") == "TaskAlreadyInvokedError"
    ),
)


def _worker_events(s: dict[str, Any], o: dict[str, Any]) -> bool:
    """sosw sends the task as read before the claim (attempts 0, its queued greenfield), every field merged into
    the payload; ours the task as claimed (attempts 1: the attempt the worker reports), its identity fields."""
    sosw_events = {e["Payload"]["task_id"]: e for e in s["result"]}
    ours_events = {e["Payload"]["task_id"]: e for e in o["result"]}
    if sosw_events.keys() != ours_events.keys() or not sosw_events:
        return False
    for task_id, event in sosw_events.items():
        mine = ours_events[task_id]
        if (event["FunctionName"], event["InvocationType"]) != (mine["FunctionName"], mine["InvocationType"]):
            return False
        if mine["Payload"]["attempts"] != int(event["Payload"]["attempts"]) + 1:  # sosw: text when given create's
            return False
        unchanged = {k: v for k, v in event["Payload"].items() if k not in ("attempts", "greenfield")}
        if not {k: v for k, v in unchanged.items() if k != "created_at"}.items() <= mine["Payload"].items():
            return False
    return True


WORKER_EVENTS = Differs(declared("worker-event"), _worker_events)


def _repr_payload(s: Any, o: Any) -> bool:
    return isinstance(s, str) and isinstance(o, str) and ast.literal_eval(s) == json.loads(o)


#: sosw's archive_task puts the payload it read (decoded) back as a Python repr: it no longer reads as JSON.
ARCHIVED_PAYLOAD = Differs(declared("archive-one-transaction"), _repr_payload)
#: sosw's WorkerAssistant writes completed_at in whole seconds; ours keeps milliseconds.
COMPLETED_AT = Differs(
    declared("completed-at-ms"),
    lambda s, o: isinstance(s, int) and isinstance(o, float) and abs(s - o) <= 30,
)


def same_labourer(sosw: dict[str, Any], ours: dict[str, Any]) -> bool:
    s, o = dict(sosw["__labourer__"]), dict(ours["__labourer__"])
    if s.pop("health_metrics", "absent") is not None or o.pop("health_metrics", None) != {}:
        return False
    # Each side times its tasks with its own clock, and sosw's completed_at drops the milliseconds
    # (declared("completed-at-ms")): their averages, rounded to seconds, may differ by one.
    s_avg, o_avg = s.pop("average_duration", None), o.pop("average_duration", None)
    if (s_avg is None) != (o_avg is None) or (s_avg is not None and abs(s_avg - o_avg) > 1):
        return False
    return same(s, o)


#: sosw's registration leaves health_metrics None when none are configured (a misplaced ``or {}``); ours {}.
LABOURERS_VIEW = Differs(
    declared("health-metrics-empty"),
    lambda s, o: len(s["result"]) == len(o["result"]) and all(map(same_labourer, s["result"], o["result"])),
)
REGISTER = Call("register_labourers", target="sosw", expect=LABOURERS_VIEW)


# ------------------------------------------------------------------ creation, reading back, labourers


def test_creation_reads_and_labourers_are_sosws(pair):
    sosw_config, ours_config = pair()
    now = int(time.time())
    queue_seed = {"task_id": "seed", "labourer_id": "l1", "created_at": now, "greenfield": STEP, "attempts": 0}
    queue_seed["payload"] = "{}"
    calls = [
        REGISTER,
        Call("construct_payload_for_task", kwargs={"payload": {"a": 1}, "b": 2}),
        Call("construct_payload_for_task", kwargs={"payload": '{"a": 1}'}),
        Call("construct_payload_for_task", kwargs={"payload": "plain"}),
        Call("construct_payload_for_task", kwargs={"payload": [1, 2], "c": 3}),
        # 5: default creation, payload merged with the other keywords
        Call("create_task", [L1], {"payload": {"a": 1, "nested": {"b": [1, 2]}}, "extra": "x"}, expect=CREATE_NUMBERS),
        Call("create_task", [L1], {"payload": [1, 2]}, expect=CREATE_NUMBERS),
        Call("create_task", [L1], {"strict": False, "task_id": "chosen-1", "payload": {"c": 1}}, expect=CREATE_NUMBERS),
        Call("get_task_by_id", ["chosen-1"]),  # point 2: the payload decoded
        Call("get_task_by_id", ["missing"]),
        Call("get_next_for_labourer", [L1]),  # 10
        Call("get_next_for_labourer", [L1], {"cnt": 3}),
        Call("get_next_for_labourer", [L1], {"cnt": 2, "only_ids": True}),
        Call("get_length_of_queue_for_labourer", [L1]),
        Call("get_oldest_greenfield_for_labourer", [L1]),
        Call("get_oldest_greenfield_for_labourer", [L1], {"reverse": True}),  # 15
        Call("get_newest_greenfield_for_labourer", [L1]),
        Call("is_valid_task", [{"$ref": [8]}]),
        Call("is_valid_task", [{"task_id": "x"}]),
        Call("get_db_field_name", ["task_id"]),
        Call("get_labourer", ["l1"]),  # 20: the registered labourer, sosw's attributes
        Call("get_labourer", ["unknown"]),  # point 7: None, as sosw
        Call("get_labourers"),
        # point 7: custom attributes of a Labourer
        Call("new_labourer", kwargs={"id": "some_lambda", "arn": "some_arn", "some_attr": "yes"}, target="sosw"),
        Call("labourer_attr", kwargs={"labourer": {"$ref": [20]}, "attr": "max_attempts"}, target="sosw"),
        # 25: an empty queue: sosw's first greenfield is twice the step, ours the step (DOMAIN.md)
        Call(
            "create_task",
            [{"$labourer": "l2"}],
            {"strict": False, "task_id": "first-of-l2", "payload": {}},
            expect=Differs(
                declared("empty-queue-step"),
                lambda s, o: s["result"]["greenfield"] == str(2 * STEP) and o["result"]["greenfield"] == STEP,
            ),
        ),
    ]
    calls[20].expect = Differs(LABOURERS_VIEW.why, lambda s, o: same_labourer(s["result"], o["result"]))
    calls[22].expect = LABOURERS_VIEW
    outcome = run_both(sosw_config, ours_config, calls, seed_rows={"tasks": [queue_seed]})
    outcome.check_calls()
    outcome.check_rows(
        {
            ("tasks", "first-of-l2", "greenfield"): Differs(
                declared("empty-queue-step"), lambda s, o: (s, o) == (2 * STEP, STEP)
            )
        }
    )


# ------------------------------------------------------------------ claims, reports, moves, archive


def test_claims_reports_moves_and_archive_are_sosws(pair):
    sosw_config, ours_config = pair()
    queue_seed = {"task_id": "seed", "labourer_id": "l1", "created_at": int(time.time()), "greenfield": STEP}
    queue_seed |= {"attempts": 0, "payload": "{}"}
    create = [
        Call("create_task", [L1], {"strict": False, "task_id": tid, "payload": {"n": n}}, expect=CREATE_NUMBERS)
        for n, tid in enumerate(("c1", "f1", "f2", "i1", "x1"))
    ]
    wa = "worker_assistant"
    calls = [
        REGISTER,
        *create,  # 1-5
        Call("mark_task_invoked", [L1, {"$ref": [1]}], expect=CLAIM_RETURNS_TASK),  # 6
        Call("mark_task_invoked", [L1, {"$ref": [1]}], expect=SECOND_CLAIM),
        Call("invoke_task", [L1], {"task_id": "f1"}, expect=INVOKE_ANSWERS),
        Call("invoke_task", [L1], {"task": {"$ref": [3]}}, expect=INVOKE_ANSWERS),
        Call("invoke_task", [L1], {"task": {"$ref": [4]}}, expect=INVOKE_ANSWERS),  # 10
        Call("invocations", target="sosw", expect=WORKER_EVENTS),
        Call("get_invoked_tasks_for_labourer", [L1]),
        Call(
            "get_running_tasks_for_labourer",
            [L1],
            expect=Differs(
                declared("running-count"),
                lambda s, o: len(o["result"]) == 4 and len(s["result"]) <= 4,
            ),
        ),
        # point 5: sosw's WorkerAssistant calls; 14-16
        Call("mark_task_as_completed", ["c1"], {"stats": {"rows": 5}, "result": {"ok": True, "n": "12"}}, target=wa),
        Call("mark_task_as_failed", ["f1"], {"result": {"error": "Boom"}}, target=wa),
        Call("__call__", [{"action": "mark_task_as_failed", "task_id": "f2", "stats": {"s": 1}}], target=wa),
        # a report for a task never invoked: sosw writes it anyway (x1 gets completed_at while queued)
        Call("mark_task_as_completed", ["x1"], target=wa),
        # and for a task that does not exist: sosw upserts a row holding only task_id and completed_at
        Call("__call__", [{"actions": ["mark_task_as_completed"], "task_id": "phantom"}], target=wa),
        Call(  # 19: sosw drops result_* and stat_*; ours keeps them, and our result and stats
            "get_completed_tasks_for_labourer",
            [L1],
            expect=Differs(
                declared("readers-every-field"),
                lambda s, o: (
                    [t["task_id"] for t in s["result"]] == [t["task_id"] for t in o["result"]] == ["c1"]
                    and same(s["result"], o["result"])
                    and "result_ok" not in s["result"][0]
                    and o["result"][0]["result_ok"] is True
                    and o["result"][0]["result"] == {"ok": True, "n": "12"}
                ),
            ),
        ),
        Call("get_invoked_tasks_for_labourer", [L1], {"completed": False}),  # 20
        Call("get_invoked_tasks_for_labourer", [L1], {"completed": True}),
        Call("get_task_by_id", ["f1"]),
        Call("archive_task", ["c1"], expect=ANSWERS),  # point 4
        Call("archive_task", ["f1"], expect=ANSWERS),
        Call("get_task_by_id", ["c1"]),  # 25
        # the seed's moves: to the retry table and back at a chosen greenfield
        Call("get_task_by_id", ["f2"]),
        Call("move_task_to_retry_table", [{"$ref": [26]}, 0], expect=ANSWERS),
        Call("get_task_by_id", ["i1"]),
        Call("move_task_to_retry_table", [{"$ref": [28]}, 0], expect=ANSWERS),
        REGISTER,  # 30: a new run: the retries are due
        Call("get_tasks_to_retry_for_labourer", [L1]),
        Call("retry_task", [{"$ref": [31, 0]}, "l1", 500], expect=ANSWERS),
        Call("retry_task", [{"$ref": [31, 1]}, "l1", 400], expect=ANSWERS),
        Call("get_next_for_labourer", [L1], {"cnt": 3}),
    ]
    outcome = run_both(sosw_config, ours_config, calls, seed_rows={"tasks": [queue_seed]})
    outcome.check_calls()
    not_written = declared("report-not-invoked")
    outcome.check_rows(
        {
            ("tasks", "phantom", None): Differs(
                not_written, lambda s, o: set(s) == {"task_id", "completed_at"} and o is None
            ),
            ("tasks", "x1", "completed_at"): Differs(not_written, lambda s, o: isinstance(s, int) and o is None),
            ("closed", "c1", "payload"): ARCHIVED_PAYLOAD,
            ("closed", "f1", "payload"): ARCHIVED_PAYLOAD,
            ("closed", "c1", "completed_at"): COMPLETED_AT,
        }
    )


# ------------------------------------------------------------------ every reader on the same rows


def test_readers_on_the_same_rows_return_sosws_fields(pair):
    sosw_config, ours_config = pair()
    now = int(time.time())

    def task(task_id: str, greenfield: int, **extra: Any) -> dict[str, Any]:
        row = {"task_id": task_id, "labourer_id": "l1", "created_at": now - 100, "greenfield": greenfield}
        return {**row, "attempts": 0, "payload": json.dumps({"id": task_id}), **extra}

    def closed(task_id: str, greenfield: int, status: int, **extra: Any) -> dict[str, Any]:
        row = task(task_id, greenfield, closed_at=now - 50, labourer_id_task_status=f"l1_{status}")
        return {**row, **extra}

    invoked_at = now + DELTA
    seed_rows = {
        "tasks": [
            task("q1", STEP, meta='{"k": 1}'),
            task("q2", 2 * STEP),
            task("r1", invoked_at - 10, attempts=1),  # running
            task("e1", invoked_at - 3000, attempts=1),  # expired (duration + cooldown: 1200 s)
            task("d1", invoked_at - 30, attempts=1, completed_at=now - 20, result_x=1),  # completed
        ],
        "retry": [
            task("w1", 5 * STEP, attempts=1, desired_launch_time=now - 100),  # due
            task("w2", 6 * STEP, attempts=1, desired_launch_time=now + 5000),
        ],
        "closed": [  # for the average: 7 s, 3 s, and a dead task of 2 attempts at max_duration (60 s) each
            closed("a1", invoked_at - 1000, 1, attempts=1, completed_at=now - 1000 + 7),
            closed("a2", invoked_at - 900, 1, attempts=2, completed_at=now - 900 + 3),
            closed("a3", invoked_at - 800, 0, attempts=2),
        ],
    }
    calls = [
        REGISTER,
        Call(
            "get_task_by_id",
            ["q1"],
            expect=Differs(
                declared("payload-only-decoded"),
                lambda s, o: (
                    s["result"]["meta"] == {"k": 1}
                    and o["result"]["meta"] == '{"k": 1}'
                    and s["result"]["payload"] == o["result"]["payload"] == {"id": "q1"}
                ),
            ),
        ),
        Call("get_next_for_labourer", [L1], {"cnt": 5}),
        Call("get_invoked_tasks_for_labourer", [L1]),
        Call("get_invoked_tasks_for_labourer", [L1], {"completed": True}),
        Call("get_invoked_tasks_for_labourer", [L1], {"completed": False}),  # 5
        Call("get_running_tasks_for_labourer", [L1]),
        Call("get_running_tasks_for_labourer", [L1], {"count": True}),
        Call("get_count_of_running_tasks_for_labourer", [L1]),
        Call("get_expired_tasks_for_labourer", [L1]),
        Call("get_completed_tasks_for_labourer", [L1]),  # 10
        Call("get_length_of_queue_for_labourer", [L1]),
        Call("get_oldest_greenfield_for_labourer", [L1]),
        Call("get_newest_greenfield_for_labourer", [L1]),
        Call("get_tasks_to_retry_for_labourer", [L1]),
        Call("get_tasks_to_retry_for_labourer", [L1], {"limit": 1}),  # 15
        Call("get_average_labourer_duration", [L1]),  # point 3: round((7 + 3 + 60 + 60) / 4) = 32
        Call("get_average_labourer_duration", [{"$labourer": "l2"}]),  # no closed task: 0
    ]
    outcome = run_both(sosw_config, ours_config, calls, seed_rows=seed_rows)
    outcome.check_calls()
    assert outcome.ours[16]["result"] == 32 and outcome.ours[17]["result"] == 0
    outcome.check_rows()


# ------------------------------------------------------------------ the processors, called as sosw's


def test_orchestrator_and_scavenger_called_as_sosws_leave_sosws_rows(pair):
    sosw_config, ours_config = pair({"l1": {"arn": "l1", "max_simultaneous_invocations": 2}})
    now = int(time.time())
    invoked_at = now + DELTA

    def task(task_id: str, greenfield: int, **extra: Any) -> dict[str, Any]:
        row = {"task_id": task_id, "labourer_id": "l1", "created_at": now - 100, "greenfield": greenfield}
        return {**row, "attempts": 0, "payload": json.dumps({"id": task_id}), **extra}

    seed_rows = {
        "tasks": [
            task("q1", STEP),
            task("q2", 2 * STEP),
            task("e1", invoked_at - 3000, attempts=1),  # expired: retried later (max_duration x attempts)
            task("e3", invoked_at - 3000, attempts=3),  # expired at max_attempts: dead, one notification
            task("d1", invoked_at - 30, attempts=1, completed_at=now - 20, result_ok=True),  # completed: archived
        ],
        "retry": [task("w1", 7 * STEP, attempts=1, desired_launch_time=now - 100)],  # due: head of the queue
    }
    calls = [
        Call("__call__", [{}], target="scavenger"),
        Call(
            "sns_messages",
            target="sosw",
            expect=Differs(
                declared("dead-notification"),
                lambda s, o: (
                    [m["message"] for m in s["result"]] == ["Closing dead task: e3 "]
                    and [json.loads(m["Message"])["task_id"] for m in o["result"]] == ["e3"]
                ),
            ),
        ),
        Call("__call__", [{}], target="orchestrator"),
        Call("invocations", target="sosw", expect=WORKER_EVENTS),
    ]
    outcome = run_both(sosw_config, ours_config, calls, seed_rows=seed_rows)
    outcome.check_calls()
    assert sorted(e["Payload"]["task_id"] for e in outcome.ours[3]["result"]) == ["q1", "w1"]
    outcome.check_rows(
        {
            ("closed", "d1", "payload"): ARCHIVED_PAYLOAD,
            ("closed", "e3", "payload"): ARCHIVED_PAYLOAD,
        }
    )


# ------------------------------------------------------------------ labourer ids given as ints


def test_int_labourer_ids_work_through_the_lifecycle_where_sosw_fails(pair):
    sosw_config, ours_config = pair({"7": {"arn": "l7", "max_simultaneous_invocations": 1}})
    queue_seed = {"task_id": "seed", "labourer_id": "7", "created_at": int(time.time()), "greenfield": STEP}
    queue_seed |= {"attempts": 0, "payload": "{}"}
    calls = [
        REGISTER,
        Call(
            "create_task", [{"$labourer": 7}], {"strict": False, "task_id": "n1", "payload": {}}, expect=CREATE_NUMBERS
        ),
        Call(
            "invoke_task",
            [{"$labourer": 7}],
            {"task_id": "n1"},
            expect=Differs(
                declared("int-labourer-id"),
                lambda s, o: s.get("exception") == "RuntimeError" and o.get("result") == "invoked",
            ),
        ),
        Call(
            "get_labourer",
            [7],
            expect=Differs(
                "the id is text",
                lambda s, o: s["result"]["__labourer__"]["id"] == 7 and o["result"]["__labourer__"]["id"] == "7",
            ),
        ),
        Call(
            "get_labourer",
            ["7"],
            expect=Differs("found by its text too (sosw: None)", lambda s, o: s["result"] is None and o["result"]),
        ),
    ]
    calls[0] = Call(
        "register_labourers",
        target="sosw",
        expect=Differs(
            "the labourer's id is text (sosw: the int of the config)",
            lambda s, o: same_labourer({"__labourer__": {**s["result"][0]["__labourer__"], "id": "7"}}, o["result"][0]),
        ),
    )
    outcome = run_both(sosw_config, ours_config, calls, seed_rows={"tasks": [queue_seed]}, int_labourer_keys=True)
    outcome.check_calls()
    outcome.check_rows(
        {
            ("tasks", "n1", "greenfield"): Differs("claimed (sosw's claim failed)", lambda s, o: s < 1e9 < o),
            ("tasks", "n1", "attempts"): Differs("claimed (sosw's claim failed)", lambda s, o: (s, o) == (0, 1)),
        }
    )
