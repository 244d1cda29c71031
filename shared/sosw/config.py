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
    # Time-to-live of closed tasks, in seconds (None keeps them). Written as the `ttl` attribute.
    "closed_task_ttl_seconds": None,
    # --- jobs (sosw.jobs): one business job as many tasks, followed as one thing ---
    "sosw_jobs_table": "sosw_jobs",
    "sosw_jobs_index": "sosw_jobs_by_list",
    # Counter items per job: closes spread over them, so one job closing 1,000 tasks a second writes each
    # item about 1000/N times a second (DynamoDB serialises writes to one item). At most 100 (one BatchGetItem).
    "job_counter_shards": 64,
    # EventBridge bus of the "Job Finished" / "Job Failed" / "Job Cancelled" events (source "sosw").
    "job_event_bus": "default",
    # sosw's Scheduler config for sosw-format jobs: one schema ({"chunkable_attrs": [...]}) and/or variants.
    "job_schema": None,
    "job_schema_variants": None,
}

#: Keys that a role reads with its own default when the config does not set them. They stay out of
#: DEFAULT_CONFIG because ``build_config`` merges nested dicts: a user's ``invocation_number_coefficient``
#: must replace the default mapping whole, not be mixed with it. The roles' defaults must equal these
#: (tests/docs/test_docs.py reads them from the code).
ROLE_DEFAULTS: dict[str, Any] = {
    "orchestrator_max_workers": 16,
    "orchestrator_safety_seconds": 5,
    "orchestrator_lease_settle_seconds": 0,
    "dispatch_poll_seconds": 0.2,
    "dispatch_poll_max_seconds": 1,
    "dispatch_wait_seconds": 20,
    "dispatch_linger_seconds": 60,
    "invocation_number_coefficient": {0: 0, 1: 0, 2: 0.5, 3: 0.75, 4: 1},
    "scavenger_safety_seconds": 5,
    "scheduler_safety_seconds": 10,
    "sns_config": None,
}

#: sosw's own keys: a sosw user's ``custom_config`` keeps their meaning here.
SOSW_KEYS = frozenset(
    {
        "dynamo_db_config",
        "sosw_closed_tasks_table",
        "sosw_closed_tasks_labourer_status_index",
        "sosw_retry_tasks_table",
        "sosw_retry_tasks_greenfield_index",
        "sosw_tasks_meta_table",
        "greenfield_invocation_delta",
        "greenfield_task_step",
        "labourers",
        "max_attempts",
        "max_attempts_<labourer>",
        "max_simultaneous_invocations",
        "max_closed_to_analyse_for_duration",
        "invocation_number_coefficient",
        "sns_config",
        "job_schema",
        "job_schema_variants",
    }
)

#: What each key is for, in the order the documentation lists them: its configuration reference
#: (docs/reference/configuration.md) is generated from this, DEFAULT_CONFIG and ROLE_DEFAULTS, so it can't
#: drift; a test holds that every key the code reads is here. Nested keys are dotted.
MEANINGS: dict[str, str] = {
    "dynamo_db_config.table_name": "open tasks",
    "dynamo_db_config.index_greenfield": "GSI (labourer_id, greenfield) of the open tasks",
    "dynamo_db_config.required_fields": "fields a task must hold to pass `is_valid_task` (sosw's)",
    "dynamo_db_config.field_names": 'rename fields to match an existing schema, e.g. `{"task_id": "id"}`',
    "sosw_retry_tasks_table": "tasks waiting for a retry, and delayed tasks",
    "sosw_retry_tasks_greenfield_index": "its index (labourer_id, greenfield): when each falls due",
    "sosw_closed_tasks_table": "closed tasks: completed, dead, cancelled",
    "sosw_closed_tasks_labourer_status_index": "its index by labourer and status, with the time",
    "sosw_tasks_meta_table": "sosw's meta table (this stack writes none; adoptable)",
    "greenfield_invocation_delta": "added to the invocation time when a task is claimed (one year)",
    "greenfield_task_step": "distance between queued tasks",
    "labourers": "`{name: {setting: value}}`: the labourer settings (see below)",
    "max_attempts": "attempts before a task is dead",
    "max_attempts_<labourer>": "the same for one labourer (its `max_attempts` setting wins)",
    "max_simultaneous_invocations": "the default concurrency cap",
    "max_closed_to_analyse_for_duration": "closed tasks averaged for a labourer's duration",
    "invocation_number_coefficient": "share of the cap used at each health, 0 to 4 (sosw's)",
    "sns_config": "sosw's SnsManager setting: `recipient` is the dead-task topic's ARN "
    "(else `SOSW_DEAD_LETTER_TOPIC_ARN`)",
    "max_task_item_bytes": "DynamoDB's item limit",
    "task_item_headroom_bytes": "the part of it a new task keeps free for its result and stats",
    "max_invoke_payload_bytes": "Lambda's asynchronous Invoke limit",
    "greenfield_ceiling_margin": "queued greenfields stay this many seconds below now",
    "greenfield_ceiling_warn_ratio": "a warning is logged past this share of that ceiling",
    "queue_count_max_pages": "pages read to count a queue; past them the length is estimated from greenfields",
    "write_retry_attempts": "tries of UnprocessedItems and of transaction conflicts (backoff with full jitter)",
    "write_retry_base_seconds": "the first backoff",
    "write_retry_cap_seconds": "the longest backoff",
    "closed_task_ttl_seconds": "TTL (the `ttl` attribute) of closed tasks; `None` keeps them",
    "sosw_orchestrator_leases_table": "the Orchestrator's lease and rate window per labourer, the slot counters, "
    "pending dead-task notifications",
    "orchestrator_max_workers": "parallel Invoke calls in one run (1 to 64: one pooled connection per thread)",
    "orchestrator_safety_seconds": "stop starting invocations this long before the Lambda's timeout",
    "orchestrator_lease_settle_seconds": "pause after a run before another may take the labourer "
    "(the slot counters make it unneeded)",
    "dispatch_poll_seconds": "a following run's pause between passes while work moves",
    "dispatch_poll_max_seconds": "its pause while nothing moves; also how often it reads the retry table's head",
    "dispatch_wait_seconds": "a run lets a labourer go after this long without progress (reports wake it again)",
    "dispatch_linger_seconds": "a run waits for a retry or delayed task falling due within this long",
    "scavenger_safety_seconds": "the Scavenger (and its job tracking) stops this long before its Lambda's timeout",
    "sosw_jobs_table": "jobs: headers and counter items",
    "sosw_jobs_index": "its index listing open and ended jobs",
    "job_counter_shards": "counter items per job (1 to 100), so one job's closes don't queue on one item",
    "job_event_bus": "EventBridge bus of the jobs' end events",
    "job_schema": "sosw's Scheduler config: how sosw-format jobs are chunked",
    "job_schema_variants": "the same, per variant",
    "scheduler_safety_seconds": "a Scheduler run stops creating tasks this long before its Lambda's timeout",
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
