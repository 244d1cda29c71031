"""The TaskManager's configuration: sosw's keys and defaults, plus this project's own.

A sosw user can pass the ``custom_config`` they already have: the table and index names and the
greenfield numbers below are sosw's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from sosw.errors import ConfigError

DEFAULT_CONFIG: dict[str, Any] = {
    "dynamo_db_config": {
        "table_name": "sosw_tasks",
        "index_greenfield": "sosw_tasks_greenfield",
        "required_fields": ["task_id", "labourer_id", "created_at", "greenfield"],
        # Rename fields to match an existing schema: {"task_id": "my_task_id"}. Types stay the same.
        "field_names": {},
    },
    "sosw_closed_tasks_table": "sosw_closed_tasks",
    "sosw_closed_tasks_labourer_status_index": "labourer_task_status_with_time",
    "sosw_retry_tasks_table": "sosw_retry_tasks",
    "sosw_retry_tasks_greenfield_index": "labourer_id_greenfield",
    "sosw_tasks_meta_table": "sosw_tasks_meta",
    # This project: one row per labourer, the Orchestrator's short lease and its per-minute invocation count.
    "sosw_orchestrator_leases_table": "sosw_orchestrator_leases",
    "greenfield_invocation_delta": 31_557_600,  # one year
    "greenfield_task_step": 1000,
    "labourers": {},
    "max_attempts": 3,
    "max_simultaneous_invocations": 1,
    "max_closed_to_analyse_for_duration": 10,
    # --- this project ---
    # DynamoDB's item limit, and the part of it kept free at creation for the worker's result and stats.
    "max_task_item_bytes": 400 * 1024,
    "task_item_headroom_bytes": 64 * 1024,
    # Lambda's limit for an asynchronous Invoke payload.
    "max_invoke_payload_bytes": 1024 * 1024,
    # A queued greenfield must stay this many seconds below "now" (the start of the invoked range);
    # a warning is logged once the newest queued greenfield passes the ratio of that ceiling.
    "greenfield_ceiling_margin": 86_400,
    "greenfield_ceiling_warn_ratio": 0.9,
    # Counting a queue reads at most this many pages; past it the length is estimated from greenfields.
    "queue_count_max_pages": 4,
    # Bounded retries of UnprocessedItems and of transaction conflicts (exponential backoff, full jitter).
    "write_retry_attempts": 8,
    "write_retry_base_seconds": 0.05,
    "write_retry_cap_seconds": 2.0,
    # The longest a task may be put to wait (a retry's wanted_delay, create_delayed_task's delay): longer is
    # taken for a mistake (a timestamp or milliseconds given as seconds) and refused, nothing written.
    "max_delay_seconds": 31_557_600,  # one year
    # Time-to-live of closed tasks, in seconds (None keeps them). Written as the `ttl` attribute.
    "closed_task_ttl_seconds": None,
    # --- jobs (sosw.jobs): one business job as many tasks, followed as one thing ---
    "sosw_jobs_table": "sosw_jobs",
    "sosw_jobs_index": "sosw_jobs_by_list",
    # Counter items per job: closes spread over them, so one job closing 1,000 tasks a second writes each
    # item about 1000/N times a second (DynamoDB serialises writes to one item). At most 100 (one BatchGetItem).
    "job_counter_shards": 32,
    # EventBridge bus of the "Job Finished" / "Job Failed" / "Job Cancelled" events (source "sosw").
    "job_event_bus": "default",
    # sosw's Scheduler config for sosw-format jobs: one schema ({"chunkable_attrs": [...]}) and/or variants.
    "job_schema": None,
    "job_schema_variants": None,
}

_POSITIVE_INTS = (
    "greenfield_invocation_delta",
    "greenfield_task_step",
    "max_attempts",
    "max_simultaneous_invocations",
    "max_task_item_bytes",
    "max_invoke_payload_bytes",
    "queue_count_max_pages",
    "write_retry_attempts",
    "max_delay_seconds",
)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``override``, merging nested dicts instead of replacing them."""
    result = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def build_config(custom_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge ``custom_config`` over the defaults and validate the values the TaskManager relies on."""
    if custom_config is not None and not isinstance(custom_config, Mapping):
        raise ConfigError(f"custom_config: expected a dict, got {type(custom_config).__name__}")
    config = deep_merge(DEFAULT_CONFIG, custom_config or {})
    for key in _POSITIVE_INTS:
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    if not 0 <= config["task_item_headroom_bytes"] < config["max_task_item_bytes"]:
        raise ConfigError(
            f"task_item_headroom_bytes: must be between 0 and max_task_item_bytes "
            f"({config['max_task_item_bytes']}), got {config['task_item_headroom_bytes']!r}"
        )
    if not isinstance(config["labourers"], Mapping):
        raise ConfigError(f"labourers: expected a dict of name -> settings, got {config['labourers']!r}")
    shards = config["job_counter_shards"]
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= 100:
        raise ConfigError(f"job_counter_shards: expected an integer from 1 to 100, got {shards!r}")
    ttl = config["closed_task_ttl_seconds"]
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1):
        raise ConfigError(f"closed_task_ttl_seconds: expected a positive integer or None, got {ttl!r}")
    return config
