"""AWS's capacity rules as the emulation of DynamoDB's limits counts them (``bench.ddb_limits.write_plan``)."""

from __future__ import annotations

from bench.ddb_limits import Index, Schema, item_size, read_units, write_plan, write_units

TASKS = Schema(
    "tasks",
    ("task_id",),
    (
        Index("by_labourer", ("labourer_id", "greenfield"), "ALL", frozenset()),
        Index("keys", ("labourer_id",), "KEYS_ONLY", frozenset()),
    ),
    "arn:aws:dynamodb:us-east-1:0:table/tasks",
)


def task(greenfield: int, **extra: str) -> dict[str, dict[str, str]]:
    return {
        "task_id": {"S": "t1"},
        "labourer_id": {"S": "hot"},
        "greenfield": {"N": str(greenfield)},
        **{k: {"S": v} for k, v in extra.items()},
    }


def test_a_put_writes_the_table_and_each_index_it_enters():
    assert write_plan(TASKS, None, task(1000), 1.0) == {
        "tasks:t1": 1.0,
        "tasks/by_labourer:hot": 1.0,
        "tasks/keys:hot": 1.0,
    }


def test_a_transaction_pays_twice_on_the_table_and_once_in_its_indexes():
    plan = write_plan(TASKS, task(1000), task(2000), 2.0)
    # the index key (labourer, greenfield) changed: a delete and a put in the same partition key
    assert plan == {"tasks:t1": 2.0, "tasks/by_labourer:hot": 2.0}


def test_a_change_of_projected_attributes_only_is_one_put_and_keys_only_indexes_see_none():
    plan = write_plan(TASKS, task(1000), task(1000, result="ok"), 1.0)
    assert plan == {"tasks:t1": 1.0, "tasks/by_labourer:hot": 1.0}


def test_a_delete_leaves_every_index_it_was_in():
    assert write_plan(TASKS, task(1000), None, 2.0) == {
        "tasks:t1": 2.0,
        "tasks/by_labourer:hot": 1.0,
        "tasks/keys:hot": 1.0,
    }


def test_units_follow_the_item_size():
    big = task(1000, payload="x" * 3000)
    assert item_size(big) > 3000
    assert write_units(item_size(big)) == 3.0
    assert read_units(item_size(big), consistent=True) == 1.0
    assert read_units(9000, consistent=False) == 1.5
