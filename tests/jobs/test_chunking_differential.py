"""Differential test: our chunking against sosw 0.7.51's own Scheduler, on the same job, config and date.

Every case runs sosw (``sosw_chunks.py`` in sosw's own virtualenv, ``make`` creates it from PyPI, with the
date frozen) and ``sosw job submit --dry-run`` on the same job, and compares the payloads as multisets of
canonical JSON. A job sosw refuses must be refused by us with ``InvalidInputError`` naming the expected field.

``make test`` requires the sosw virtualenv (``SOSW_REQUIRE_DIFFERENTIAL=1``); a bare ``pytest`` without it skips.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import io
import itertools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sosw import cli
from sosw.errors import InvalidInputError
from sosw.jobs.chunking import iter_task_payloads, job_labourer, validate_job

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

SOSW_PYTHON = Path(os.environ.get("SOSW_VENV", ROOT / ".cache" / "bench-sosw-venv")) / "bin" / "python"
SOSW_SCRIPT = HERE / "sosw_chunks.py"

if not SOSW_PYTHON.exists() and os.environ.get("SOSW_REQUIRE_DIFFERENTIAL") == "1":
    raise RuntimeError(f"sosw 0.7.51 virtualenv missing at {SOSW_PYTHON.parent.parent}: `make test` creates it")
pytestmark = pytest.mark.skipif(
    not SOSW_PYTHON.exists(),
    reason=f"sosw 0.7.51 virtualenv not found at {SOSW_PYTHON.parent.parent}: `make test` creates it",
)

TODAY = "2024-05-15"  # a Wednesday
S3 = {"chunkable_attrs": [["section", {}], ["store", {}], ["product", {}]]}
S2 = {"chunkable_attrs": [["section", {}], ["store", {}]]}
S1 = {"chunkable_attrs": [["section", {}]]}
F = "some_function"

NESTED = {
    "s1": {"stores": {"st1": {"products": ["p1", "p2"]}, "st2": {"products": ["p3"]}}},
    "s2": {"stores": {"st3": {"products": ["p4", "p5", "p6"]}}},
}


def _canonical(outcome: dict[str, Any]) -> list[str] | str:
    if "error" in outcome:
        return outcome["error"]
    return sorted(json.dumps(row, sort_keys=True) for row in outcome["payloads"])


def sosw_result(job: Any, schema: Any, today: str = TODAY, hash_seed: int = 0) -> list[str] | str:
    """sosw's payloads (sorted canonical JSON) or its error text ("Type: message")."""
    key = json.dumps([job, schema, today], sort_keys=True)
    if hash_seed == 0 and key in _SOSW_BATCH:
        return _SOSW_BATCH[key]
    request = json.dumps({"job": job, "job_schema": schema, "today": today})
    done = subprocess.run(
        [str(SOSW_PYTHON), str(SOSW_SCRIPT), "--batch"],
        input=f"[{request}]",
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": str(hash_seed)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return _canonical(json.loads(done.stdout)[0])


#: sosw's outcome for every case, computed in one interpreter the first time one is needed.
_SOSW_BATCH: dict[str, list[str] | str] = {}


@pytest.fixture(scope="module", autouse=True)
def sosw_outcomes() -> None:
    cases = [(c[1], c[2], c[3]) for c in ACCEPTED + REFUSED + DEVIATIONS]
    requests = [{"job": job, "job_schema": schema, "today": today} for job, schema, today in cases]
    done = subprocess.run(
        [str(SOSW_PYTHON), str(SOSW_SCRIPT), "--batch"],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0"},
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for (job, schema, today), result in zip(cases, json.loads(done.stdout), strict=True):
        _SOSW_BATCH[json.dumps([job, schema, today], sort_keys=True)] = _canonical(result)


def our_result(job: Any, schema: Any, today: str, tmp_path: Path) -> list[str] | str:
    """``sosw job submit --dry-run`` on the job: its payload lines (sorted canonical JSON), or its error line."""
    job_file, schema_file = tmp_path / "job.json", tmp_path / "schema.json"
    job_file.write_text(job if isinstance(job, str) else json.dumps(job))
    schema_file.write_text(json.dumps(schema))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(
            ["job", "submit", str(job_file), "--job-schema", str(schema_file), "--today", today, "--dry-run"]
        )
    if code != 0:
        return err.getvalue().strip()
    return sorted(json.dumps(json.loads(line), sort_keys=True) for line in out.getvalue().splitlines())


def module_result(job: Any, schema: Any, today: str = TODAY) -> list[str]:
    payloads = iter_task_payloads(job, schema, datetime.date.fromisoformat(today))
    # Through JSON, as sosw's payloads go through its queue file.
    return sorted(json.dumps(json.loads(json.dumps(p)), sort_keys=True) for p in payloads)


# (id, job, schema, today, expected number of payloads) -- the count guards against both sides being empty.
ACCEPTED: list[tuple[str, Any, Any, str, int]] = [
    # --- no chunking: the job goes through as one task, untouched (period not even parsed)
    (
        "no_chunking_passthrough",
        {"lambda_name": F, "sections": {"a": None}, "period": "last_3_days", "labourer_id": "mine", "extra": 1},
        S3,
        TODAY,
        1,
    ),
    (
        "no_chunking_bogus_period_not_checked",
        {"lambda_name": F, "sections": {"a": None}, "period": "fortnight"},
        S3,
        TODAY,
        1,
    ),
    (
        "isolate_false_passthrough",
        {"lambda_name": F, "sections": {"a": None, "b": None}, "isolate_sections": False},
        S2,
        TODAY,
        1,
    ),
    # --- isolation at the top level
    (
        "isolate_sections_flat_list",
        {"lambda_name": F, "sections": ["a", "b", "c"], "isolate_sections": True},
        S3,
        TODAY,
        3,
    ),
    (
        "isolate_sections_dict_of_none",
        {"lambda_name": F, "sections": {"a": None, "b": None}, "isolate_sections": True, "other": [1, 2]},
        S3,
        TODAY,
        2,
    ),
    ("isolate_section_singular_flag", {"lambda_name": F, "sections": ["a", "b"], "isolate_section": 1}, S3, TODAY, 2),
    # --- nested chunking sections -> stores -> products
    ("nested_isolate_products", {"lambda_name": F, "sections": NESTED, "isolate_products": True}, S3, TODAY, 6),
    ("nested_isolate_stores", {"lambda_name": F, "sections": NESTED, "isolate_stores": True}, S3, TODAY, 3),
    (
        "nested_isolate_all_levels",
        {
            "lambda_name": F,
            "sections": NESTED,
            "isolate_sections": True,
            "isolate_stores": True,
            "isolate_products": True,
        },
        S3,
        TODAY,
        6,
    ),
    (
        "nested_inner_flag_only",
        {
            "lambda_name": F,
            "sections": {
                "s1": {"isolate_stores": True, "stores": {"x": None, "y": None}},
                "s2": {"stores": {"z": None}},
            },
        },
        S3,
        TODAY,
        3,
    ),
    (
        "nested_outer_false_overrides_inner_true",
        {
            "lambda_name": F,
            "isolate_stores": False,
            "sections": {"s1": {"isolate_stores": True, "stores": {"x": None, "y": None}}},
        },
        S3,
        TODAY,
        1,
    ),
    (
        "nested_leaf_subdata_merged",
        {
            "lambda_name": F,
            "isolate_stores": True,
            "sections": {"s1": {"stores": {"st1": {"note": "n1", "sections": "overridden"}, "st2": None}}},
        },
        S2,
        TODAY,
        2,
    ),
    (
        "nested_siblings_of_flat_list_dropped",
        {
            "lambda_name": F,
            "isolate_stores": True,
            "sections": {"s1": {"stores": {"st1": {"products": ["p1", "p2"], "extra": 1}}}},
        },
        S3,
        TODAY,
        1,
    ),
    (
        "nested_mixed_none_and_subjobs",
        {
            "lambda_name": F,
            "isolate_sections": True,
            "sections": {"a": None, "c": {"stores": {"s1": None, "s2": {"products": ["p"]}}}},
        },
        S3,
        TODAY,
        2,
    ),
    (
        "nested_empty_subjob_kept",
        {"lambda_name": F, "isolate_sections": True, "sections": {"a": {}, "b": None}},
        S3,
        TODAY,
        2,
    ),
    (
        # The non-chunked level drops a falsy spelling and goes on to the other one (found by the fuzzer).
        "nested_falsy_spelling_skipped",
        {"lambda_name": F, "isolate_sections": True, "sections": {"w": {"stores": [], "store": ["x", "y"], "k": 1}}},
        S2,
        TODAY,
        1,
    ),
    (
        "nested_unflattenable_value_kept_raw",
        {"lambda_name": F, "isolate_sections": True, "sections": {"w": {"stores": {"a": 1, "b": 2}, "k": 1}}},
        S2,
        TODAY,
        1,
    ),
    # --- max_<attr>s_per_batch
    (
        "max_sections_per_batch_2",
        {"lambda_name": F, "sections": ["a", "b", "c", "d", "e"], "max_sections_per_batch": 2},
        S3,
        TODAY,
        3,
    ),
    (
        "max_products_per_batch_nested",
        {"lambda_name": F, "sections": NESTED, "isolate_stores": True, "max_products_per_batch": 2},
        S3,
        TODAY,
        4,
    ),
    (
        "max_stores_per_batch_inner_level",
        {
            "lambda_name": F,
            "isolate_sections": True,
            "sections": {"a": {"stores": ["x", "y", "z"], "max_stores_per_batch": 2}},
        },
        S2,
        TODAY,
        2,
    ),
    (
        "max_per_batch_string_number",
        {"lambda_name": F, "sections": ["a", "b", "c"], "max_sections_per_batch": "2"},
        S3,
        TODAY,
        2,
    ),
    (
        "max_per_batch_million_means_one",
        {"lambda_name": F, "sections": ["a", "b", "c"], "max_sections_per_batch": 1000000},
        S3,
        TODAY,
        3,
    ),
    (
        "max_singular_per_batch_means_one",
        {"lambda_name": F, "sections": ["a", "b", "c"], "max_section_per_batch": 2},
        S3,
        TODAY,
        3,
    ),
    (
        "max_per_batch_negative_drops_all",
        {"lambda_name": F, "sections": ["a", "b"], "isolate_sections": True, "max_sections_per_batch": -1},
        S3,
        TODAY,
        0,
    ),
    (
        "max_per_batch_on_dict_of_none",
        {"lambda_name": F, "sections": {"a": None, "b": None, "c": None}, "max_sections_per_batch": 2},
        S3,
        TODAY,
        2,
    ),
    # --- quirks kept on purpose
    ("singular_key_chunked_twice", {"lambda_name": F, "section": ["a", "b"], "isolate_sections": True}, S3, TODAY, 4),
    ("isolate_without_values_gives_nothing", {"lambda_name": F, "isolate_sections": True, "x": 1}, S3, TODAY, 0),
    (
        "chunked_labourer_id_overridden",
        {"lambda_name": F, "labourer_id": "mine", "sections": ["a"], "isolate_sections": True},
        S3,
        TODAY,
        1,
    ),
    (
        "string_schema_entry_first_letter",
        {"lambda_name": F, "ps": ["a", "b"], "isolate_ps": True},
        {"chunkable_attrs": ["product"]},
        TODAY,
        2,
    ),
    # --- period words, each with and without isolate_days
    *[
        (
            f"period_{period}_{'isolated' if iso else 'whole'}",
            {
                "lambda_name": F,
                "sections": ["a", "b"],
                "isolate_sections": True,
                "period": period,
                **({"isolate_days": True} if iso else {}),
            },
            S3,
            TODAY,
            2 * (n if iso else 1),
        )
        for period, n in [
            ("last_3_days", 3),
            ("previous_2_days", 2),
            ("5_days_back", 1),
            ("yesterday", 1),
            ("today", 1),
            ("last_week", 7),
        ]
        for iso in (False, True)
    ],
    (
        "period_last_week_on_sunday",
        {"lambda_name": F, "sections": ["a"], "isolate_sections": True, "period": "last_week", "isolate_days": True},
        S3,
        "2024-05-19",
        7,
    ),
    (
        "period_last_week_on_monday",
        {"lambda_name": F, "sections": ["a"], "isolate_sections": True, "period": "last_week"},
        S3,
        "2024-05-13",
        1,
    ),
    (
        "period_across_leap_day",
        {"lambda_name": F, "sections": ["a"], "isolate_sections": True, "period": "last_3_days", "isolate_days": True},
        S3,
        "2024-03-01",
        3,
    ),
    (
        "period_prefix_match",
        {
            "lambda_name": F,
            "sections": ["a"],
            "isolate_sections": True,
            "period": "last_2_days_please",
            "isolate_days": True,
        },
        S3,
        TODAY,
        2,
    ),
    (
        "period_isolate_days_string_false_is_true",
        {
            "lambda_name": F,
            "sections": ["a"],
            "isolate_sections": True,
            "period": "last_2_days",
            "isolate_days": "false",
        },
        S3,
        TODAY,
        2,
    ),
    (
        "period_zero_days_whole",
        {"lambda_name": F, "sections": ["a"], "isolate_sections": True, "period": "previous_0_days"},
        S3,
        TODAY,
        1,
    ),
    (
        "period_empty_dropped",
        {"lambda_name": F, "sections": ["a"], "isolate_sections": True, "period": "", "isolate_days": True},
        S3,
        TODAY,
        1,
    ),
    (
        "period_overrides_date_list",
        {"lambda_name": F, "sections": ["a"], "isolate_sections": True, "period": "today", "date_list": ["2000-01-01"]},
        S3,
        TODAY,
        1,
    ),
    (
        "period_times_nested",
        {"lambda_name": F, "sections": NESTED, "isolate_products": True, "period": "last_2_days", "isolate_days": True},
        S3,
        TODAY,
        12,
    ),
    # --- job_schema_variants and the job's format
    (
        "variants_named",
        {"lambda_name": F, "job_schema_name": "by_store", "stores": ["a", "b"], "isolate_stores": True},
        {"job_schema_variants": {"default": S1, "by_store": {"chunkable_attrs": [["store", {}]]}}},
        TODAY,
        2,
    ),
    (
        "variants_default",
        {"lambda_name": F, "sections": ["a", "b"], "isolate_sections": True},
        {"job_schema_variants": {"default": S1, "by_store": {"chunkable_attrs": [["store", {}]]}}},
        TODAY,
        2,
    ),
    (
        "variants_falsy_name_means_default",
        {"lambda_name": F, "job_schema_name": "", "sections": ["a", "b"], "isolate_sections": True},
        {"job_schema_variants": {"default": S1}},
        TODAY,
        2,
    ),
    (
        "job_wrapped_json_string_with_arn",
        {
            "job": json.dumps(
                {
                    "lambda_name": "arn:aws:lambda:us-west-2:000000000000:function:some_function:live",
                    "sections": ["a", "b"],
                    "isolate_sections": True,
                }
            )
        },
        S3,
        TODAY,
        2,
    ),
    ("job_as_json_text", json.dumps({"lambda_name": F, "sections": ["a"], "isolate_sections": True}), S3, TODAY, 1),
]

# (id, job, schema, today, field our InvalidInputError must name)
REFUSED: list[tuple[str, Any, Any, str, str]] = [
    ("missing_lambda_name", {"sections": ["a"], "isolate_sections": True}, S3, TODAY, "lambda_name"),
    ("empty_lambda_name", {"lambda_name": "", "sections": ["a"]}, S3, TODAY, "lambda_name"),
    ("lambda_name_not_string", {"lambda_name": 42, "sections": ["a"]}, S3, TODAY, "lambda_name"),
    (
        "unknown_period",
        {"lambda_name": F, "sections": ["a"], "isolate_sections": True, "period": "last_fortnight"},
        S3,
        TODAY,
        "period",
    ),
    (
        "period_not_string",
        {"lambda_name": F, "sections": ["a"], "isolate_sections": True, "period": 7},
        S3,
        TODAY,
        "period",
    ),
    (
        "period_isolate_days_no_days",
        {"lambda_name": F, "sections": ["a"], "isolate_sections": True, "period": "last_0_days", "isolate_days": True},
        S3,
        TODAY,
        "period",
    ),
    (
        "period_before_year_one",
        {"lambda_name": F, "sections": ["a"], "isolate_sections": True, "period": "last_800000_days"},
        S3,
        TODAY,
        "period",
    ),
    ("flat_list_above_a_lower_level", {"lambda_name": F, "sections": ["a", "b"]}, S3, TODAY, "sections"),
    (
        "scalar_above_a_lower_level",
        {"lambda_name": F, "sections": {"a": {"stores": "abc"}}},
        S3,
        TODAY,
        "sections['a'].stores",
    ),
    (
        "nested_flat_list_without_isolation",
        {"lambda_name": F, "isolate_sections": True, "sections": {"a": {"stores": ["x", "y"]}}},
        S3,
        TODAY,
        "sections['a'].stores",
    ),
    (
        "subjob_is_a_list",
        {"lambda_name": F, "sections": {"a": [1]}, "isolate_sections": True},
        S3,
        TODAY,
        "sections['a']",
    ),
    (
        "isolated_values_not_flat",
        {"lambda_name": F, "sections": ["a", None], "isolate_sections": True},
        S3,
        TODAY,
        "sections",
    ),
    (
        "max_per_batch_zero",
        {"lambda_name": F, "sections": ["a"], "isolate_sections": True, "max_sections_per_batch": 0},
        S3,
        TODAY,
        "max_sections_per_batch",
    ),
    (
        "max_per_batch_not_integer",
        {"lambda_name": F, "sections": ["a"], "isolate_sections": True, "max_sections_per_batch": "lots"},
        S3,
        TODAY,
        "max_sections_per_batch",
    ),
    ("empty_chunkable_attrs", {"lambda_name": F, "x": 1}, {"chunkable_attrs": []}, TODAY, "chunkable_attrs"),
    (
        "plural_chunkable_attr",
        {"lambda_name": F, "x": 1},
        {"chunkable_attrs": [["stores", {}]]},
        TODAY,
        "chunkable_attrs",
    ),
    ("schema_without_chunkable_attrs", {"lambda_name": F, "x": 1}, {"attrs": []}, TODAY, "chunkable_attrs"),
    ("unknown_variant", {"lambda_name": F, "job_schema_name": "nope", "x": 1}, S3, TODAY, "job_schema_name"),
    (
        "variants_without_default",
        {"lambda_name": F, "x": 1},
        {"job_schema_variants": {"v": S3}},
        TODAY,
        "chunkable_attrs",
    ),
    ("sibling_file_name", {"lambda_name": F, "file_name": "tasks_queue_x.txt"}, S3, TODAY, "file_name"),
    ("job_not_an_object", json.dumps(["lambda_name"]), S3, TODAY, "job"),
]


#: Accepted by sosw, refused by us on purpose (docs/concepts/jobs.md): a chunked attribute given as one value.
DEVIATIONS: list[tuple[str, Any, Any, str, str]] = [
    ("scalar_value_wrapped", {"lambda_name": F, "sections": "only", "isolate_sections": True}, S3, TODAY, "sections"),
    (
        "nested_scalar_wrapped",
        {"lambda_name": F, "isolate_stores": True, "sections": {"a": {"stores": 7}}},
        S2,
        TODAY,
        "sections['a'].stores",
    ),
]


def test_case_counts() -> None:
    """The issue: at least 15 jobs, nested chunking and every period word included; refusals too."""
    assert len(ACCEPTED) >= 15 and len(REFUSED) >= 3
    ids = [c[0] for c in ACCEPTED + REFUSED + DEVIATIONS]
    assert len(set(ids)) == len(ids)
    periods = {c[1].get("period", "") for c in ACCEPTED if isinstance(c[1], dict)}
    for word in ("last_", "previous_", "_days_back", "yesterday", "today", "last_week"):
        assert any(word in p for p in periods), word
    assert any(c[0].startswith("nested_") for c in ACCEPTED)


@pytest.mark.parametrize(("job", "schema", "today", "count"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_same_payloads_as_sosw(job: Any, schema: Any, today: str, count: int, tmp_path: Path) -> None:
    # Given sosw's own payloads for the job on that date
    theirs = sosw_result(job, schema, today)
    assert not isinstance(theirs, str), f"sosw refused the job: {theirs}"
    # When the CLI previews the same job with the same schema and date
    ours = our_result(job, schema, today, tmp_path)
    # Then the multisets are equal (and the module's stream gives the same)
    assert ours == theirs
    assert module_result(job, schema, today) == theirs
    assert len(ours) == count


@pytest.mark.parametrize(("job", "schema", "today", "field"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_like_sosw(job: Any, schema: Any, today: str, field: str, tmp_path: Path) -> None:
    theirs = sosw_result(job, schema, today)
    assert isinstance(theirs, str), f"sosw accepted the job: {theirs}"
    with pytest.raises(InvalidInputError) as caught:
        iter_task_payloads(job, schema, datetime.date.fromisoformat(today))  # raises at the call, before iteration
    assert caught.value.field == field
    with pytest.raises(InvalidInputError):
        validate_job(job, schema, datetime.date.fromisoformat(today))
    # The CLI says so in one line naming the field, and prints no payload
    error = our_result(job, schema, today, tmp_path)
    assert isinstance(error, str) and error.startswith(f"sosw: {field}: "), error


@pytest.mark.parametrize(
    ("job", "schema", "today", "field"), [c[1:] for c in DEVIATIONS], ids=[c[0] for c in DEVIATIONS]
)
def test_deliberate_refusals_of_what_sosw_wraps(job: Any, schema: Any, today: str, field: str, tmp_path: Path) -> None:
    theirs = sosw_result(job, schema, today)
    assert not isinstance(theirs, str), "sosw was expected to accept (and wrap) it"
    error = our_result(job, schema, today, tmp_path)
    assert isinstance(error, str) and error.startswith(f"sosw: {field}: "), error


def test_spelling_order_is_sosw_hash_seed_dependent() -> None:
    """Both 'store' and 'stores' present at one level: sosw's outcome depends on PYTHONHASHSEED (a set's order).

    Ours is fixed, and is one of sosw's outcomes.
    """
    job = {
        "lambda_name": F,
        "isolate_section": True,
        "isolate_product": True,
        "section": {"y": {"stores": ["a"]}},
        "store": {"w": {"products": ["m"]}},
    }
    outcomes = {json.dumps(sosw_result(job, S3, hash_seed=seed)) for seed in range(8)}
    assert len(outcomes) > 1, "sosw was expected to vary with PYTHONHASHSEED here"
    try:
        ours: list[str] | str = module_result(job, S3)
        assert json.dumps(ours) in outcomes
    except InvalidInputError:
        assert any(isinstance(json.loads(o), str) for o in outcomes)


def test_streams_lazily() -> None:
    """700 million payloads (1,000 products x 700,000 days): validation and the first payloads are immediate."""
    job = {
        "lambda_name": F,
        "products": [f"p{i}" for i in range(1000)],
        "isolate_products": True,
        "period": "last_700000_days",
        "isolate_days": True,
    }
    payloads = iter_task_payloads(job, {"chunkable_attrs": [["product", {}]]}, datetime.date(2024, 5, 15))
    assert inspect.isgenerator(payloads)
    first = list(itertools.islice(payloads, 1001))
    assert first[0] == {"isolate_products": True, "products": ["p0"], "date_list": ["0107-11-02"], "labourer_id": F}
    assert first[1000]["date_list"] == ["0107-11-03"]


def test_validation_before_any_payload() -> None:
    """An error deep in the job (the last section) is raised at the call, not after the first sections' tasks."""
    sections = {f"s{i}": {"stores": {"x": None}} for i in range(1000)}
    sections["s999"] = {"stores": {"x": [1]}}
    job = {"lambda_name": F, "sections": sections, "isolate_stores": True}
    with pytest.raises(InvalidInputError) as caught:
        iter_task_payloads(job, S2, datetime.date(2024, 5, 15))
    assert caught.value.field == "sections['s999'].stores['x']"


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ({"lambda_name": "worker"}, "worker"),
        ({"lambda_name": "arn:aws:lambda:us-west-2:000000000000:function:worker"}, "worker"),
        ({"lambda_name": "arn:aws:lambda:us-west-2:000000000000:function:worker:prod"}, "worker"),
        ({"job": {"lambda_name": "worker"}}, "worker"),
        (json.dumps({"job": json.dumps({"lambda_name": "worker"})}), "worker"),
    ],
)
def test_job_labourer(job: Any, expected: str) -> None:
    assert job_labourer(job) == expected
    payloads = list(iter_task_payloads(job, S3, datetime.date(2024, 5, 15)))
    assert [p["labourer_id"] for p in payloads] == [expected]


def test_job_is_not_mutated() -> None:
    job = {"lambda_name": F, "sections": NESTED, "isolate_products": True, "period": "last_2_days"}
    before = json.dumps(job, sort_keys=True)
    list(iter_task_payloads(job, S3, datetime.date(2024, 5, 15)))
    assert json.dumps(job, sort_keys=True) == before
