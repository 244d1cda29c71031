"""Turn a sosw job into task payloads exactly as sosw 0.7.51's Scheduler does, but as a stream.

sosw builds every payload in memory (``Scheduler.construct_job_data`` returns a list, then writes a file);
a job of a million tasks costs a million dicts. Here the same chunking is a chain of generators: dates
are produced one at a time, and each level of ``chunkable_attrs`` yields its tasks as it walks the job,
so memory stays flat however many payloads come out. Line references (``scheduler.py:NNN``) are to
``sosw/scheduler.py`` of sosw 0.7.51; ``helpers.py`` is ``sosw/components/helpers.py``.

Everything sosw would refuse is refused up front by :func:`validate_job`, with an ``InvalidInputError``
naming the field, before the first payload is produced: a caller never gets half a job.

sosw's quirks are reproduced on purpose (docs/concepts/jobs.md); one is refused instead (a single value where a
chunked attribute expects a list or a dict, which sosw wraps into a list), and its set-ordering of the singular/plural
spellings of an attribute, which depends on ``PYTHONHASHSEED``, is replaced by a fixed order.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sosw.errors import InvalidInputError
from sosw.jobs.job_event import chunkable_attrs, extract_job, iter_dates, period_dates

__all__ = ["MAX_BATCH", "iter_task_payloads", "job_labourer", "validate_job"]

#: sosw's batch size when ``max_<attr>s_per_batch`` is not given (scheduler.py:453, "not configurable").
MAX_BATCH = 1_000_000

#: Keys that sosw carries from a level down into the sub-jobs it inspects (scheduler.py:595).
_ISOLATION_KEY = re.compile(r"isolate_[\w]*|max_[\w]*_per_batch")

_SEQUENCES = (list, set, tuple)


# --------------------------------------------------------------------------------------------------- public API


def job_labourer(job: Mapping[str, Any] | str) -> str:
    """The labourer id sosw takes from the job: ``lambda_name`` with any ARN trimmed to the function name.

    Raises ``InvalidInputError`` where sosw refuses the job for its ``lambda_name`` (missing, not a string,
    or trimming to an empty name, which no labourer config can register).
    """
    return extract_job(job)[1]


def validate_job(
    job: Mapping[str, Any] | str, job_schema: Mapping[str, Any], today: datetime.date | None = None
) -> None:
    """Raise ``InvalidInputError`` (naming the field) for every job sosw 0.7.51 would refuse; else return.

    ``today`` only matters for a period reaching before year 1; it defaults to the current date, as sosw's does.
    The walk costs the size of the job, not the number of payloads: one date's worth of chunking is
    checked (every date chunks the same way) and flat lists are checked, not sliced.
    """
    _plan(job, job_schema, datetime.date.today() if today is None else today)


def iter_task_payloads(
    job: Mapping[str, Any] | str, job_schema: Mapping[str, Any], today: datetime.date
) -> Iterator[dict[str, Any]]:
    """Yield the payloads sosw would write for ``job`` (as a multiset; the order may differ), lazily.

    ``job`` is the job event in sosw's format: the job itself, or ``{"job": <job>}``, either as a dict or
    as JSON text. Each payload carries ``labourer_id`` (see :func:`job_labourer`), as sosw's do.

    ``job_schema`` is either one schema, ``{"chunkable_attrs": [["section", {}], ...]}`` (what sosw applies
    as ``job_schema_variants['default']``), or ``{"job_schema_variants": {name: schema, ...}}``, from which
    the job's ``job_schema_name`` (or ``default``) is taken, as ``Scheduler.apply_job_schema`` does.

    ``today`` stands for sosw's ``datetime.date.today()`` in the period words.

    The job is validated when this is called, not when iteration starts, so a refused job raises
    ``InvalidInputError`` before any payload exists. Payloads share nested values (lists, dicts) with the
    job and with one another, as they are meant to be serialised: copy one before mutating its contents.
    """
    return _plan(job, job_schema, today).payloads()


# ------------------------------------------------------------------------------------------- job and schema


# -------------------------------------------------------------------------------------------------- chunking


def _spellings(attr: str) -> list[str]:
    """sosw's ``single_or_plural`` (scheduler.py:61). sosw's order is a set's (it varies with PYTHONHASHSEED)."""
    return list(dict.fromkeys([f"{attr.rstrip('s')}s", attr, attr.rstrip("s"), f"{attr}s"]))


def _plural(attr: str) -> str:
    """scheduler.py:66."""
    return f"{attr.rstrip('s')}s"


def _values(data: Mapping[str, Any], name: str) -> list[Any]:
    """helpers.py:310 ``get_list_of_multiple_or_one_or_empty_from_dict``: a falsy value counts as absent."""
    found = data.get(name) or data.get(name.rstrip("s"))
    if not found:
        return []
    if isinstance(found, list):
        return found  # sosw copies it (list(results)); never mutated here, so a million-item list isn't doubled
    return list(found) if isinstance(found, _SEQUENCES) else [found]


def _flat_values(data: Any) -> list[Any] | tuple[Any, ...] | None:
    """scheduler.py:224 ``validate_list_of_vals``, returning None where sosw raises its ``InvalidJob``."""
    if isinstance(data, _SEQUENCES):
        return data if all(isinstance(v, (str, int, float)) for v in data) else None
    if isinstance(data, Mapping):
        if all(v is None for v in data.values()):
            return list(data.keys())
        return [data] if len(data) == 1 else None
    return None


def _where(path: str | None, key: str) -> str:
    return f"{path}.{key}" if path else key


@dataclass
class _Chunker:
    """sosw's ``needs_chunking`` / ``chunk_job`` for one list of chunkable attributes, as generators.

    With ``dry`` the walk raises what sosw would raise but yields nothing and does not slice flat lists:
    that is how a job is validated at the cost of its size rather than of its payload count.
    """

    attrs: list[str]
    _next: dict[str, str | None] = field(default_factory=dict)

    def next_attr(self, attr: str) -> str | None:
        """scheduler.py:578: the attribute after ``attr`` (any spelling) in ``chunkable_attrs``, or None."""
        if attr not in self._next:
            try:
                i = self.attrs.index(attr.rstrip("s"))
            except ValueError:
                self._next[attr] = None
            else:
                self._next[attr] = self.attrs[i + 1] if i + 1 < len(self.attrs) else None
        return self._next[attr]

    def needs_chunking(self, attr: str, data: Mapping[str, Any], path: str | None = None) -> bool:
        """scheduler.py:598: an isolate/max flag for ``attr`` here, or (recursively) in a sub-job of its values.

        The flags of this level override the sub-job's own ones (``{**subdata, **root_isolate_attrs}``), and a
        value that is not a mapping while a lower level exists is an error, unless a flag answered first.
        """
        spellings = _spellings(attr)
        if any(data[k] for k in (f"isolate_{a}" for a in spellings) if k in data) or any(
            data[k] for k in (f"max_{a}_per_batch" for a in spellings) if k in data
        ):
            return True
        next_attr = self.next_attr(attr)
        if next_attr:
            inherited = {k: v for k, v in data.items() if _ISOLATION_KEY.match(k)}
            for a in spellings:
                for val in _values(data, a):
                    if not isinstance(val, Mapping):  # sosw: AttributeError on val.items() (scheduler.py:628)
                        raise InvalidInputError(
                            _where(path, a),
                            f"values must be mappings of name -> sub-job (or null) because {next_attr!r} is chunked "
                            f"below it; got {val!r}. Flat values are only accepted at this level with "
                            f"isolate_{_plural(attr)} or max_{_plural(attr)}_per_batch set",
                        )
                    for name, subdata in val.items():
                        if isinstance(subdata, Mapping) and self.needs_chunking(
                            next_attr,
                            {**subdata, **inherited},
                            f"{_where(path, a)}[{name!r}]" if path is not None else None,
                        ):
                            return True
        return False

    def batch_size(self, attr: str, job: Mapping[str, Any], skeleton: Mapping[str, Any], path: str | None) -> int:
        """scheduler.py:454: ``max_<attr>s_per_batch`` of this level, else inherited, else MAX_BATCH."""
        key = f"max_{_plural(attr)}_per_batch"
        raw = job.get(key, skeleton.get(key, MAX_BATCH))
        try:
            return int(raw)
        except (TypeError, ValueError, OverflowError):
            raise InvalidInputError(_where(path, key), f"must be an integer, got {raw!r}") from None

    @staticmethod
    def push(
        skeleton: Mapping[str, Any], key: str, vals: Any, batch_size: int, dry: bool, path: str | None
    ) -> Iterator[dict[str, Any]]:
        """scheduler.py:458 with helpers.py:211 ``chunks``: ``vals`` in slices of ``batch_size`` (lazily)."""
        if batch_size == 0:  # range(0, n, 0) raises in sosw
            raise InvalidInputError(_where(path, f"max_{key}_per_batch"), "must not be 0")
        if isinstance(vals, set):  # sosw slices it, and a set can't be sliced
            raise InvalidInputError(_where(path, key), "a set can't be split into batches; give a list")
        if dry:
            return
        for start in range(0, len(vals), batch_size):  # a negative batch_size yields nothing, as in sosw
            yield {**skeleton, key: vals[start : start + batch_size]}

    def chunk_job(
        self, job: Mapping[str, Any], skeleton: Mapping[str, Any], attr: str, dry: bool, path: str | None
    ) -> Iterator[dict[str, Any]]:
        """scheduler.py:433 ``chunk_job``: the tasks of ``job`` at the level ``attr``, recursing downwards.

        ``path`` (dry runs only) locates the level for error messages; generation passes None.
        """
        key = _plural(attr)
        batch_size = self.batch_size(attr, job, skeleton, path)

        if not self.needs_chunking(key, {**job, **skeleton}, path):
            # scheduler.py:533-557: flatten this level's values into one list (batched), or pass the job through.
            rest = dict(job)
            for a in _spellings(attr):
                if a in rest:
                    value = rest.pop(a)  # a falsy value is dropped from the payload, and the next spelling tried
                    if value:
                        vals = _flat_values(value)
                        if vals is not None:
                            # Only the inherited skeleton: this level's other keys are dropped (sosw returns here).
                            yield from self.push(skeleton, key, vals, batch_size, dry, path)
                            return
                        rest[a] = value  # not flat: kept as it is, and no other spelling is looked at
                        break
            if not dry:
                yield {**skeleton, **rest}
            return

        if batch_size == MAX_BATCH:  # scheduler.py:471: isolate one by one unless a batch size was given
            batch_size = 1
        next_attr = self.next_attr(attr)
        for spelling in _spellings(attr):
            current = _values(job, spelling)
            if not current:
                continue
            where = _where(path, spelling) if path is not None else None
            raw = job.get(spelling) or job.get(spelling.rstrip("s"))
            if not isinstance(raw, (Mapping, *_SEQUENCES)):
                # The one deliberate difference from sosw, which wraps a scalar into a one-item list here: a
                # chunked attribute given as a single value is far more often a typo than a one-item job.
                raise InvalidInputError(
                    where or spelling, f"a chunked attribute must be a list or a dict (sosw wraps it), got {raw!r}"
                )
            task_skeleton = {**skeleton, **{k: v for k, v in job.items() if k != spelling}}
            if not all(isinstance(v, Mapping) for v in current):
                vals = _flat_values(current)
                if vals is None:  # sosw: InvalidJob (scheduler.py:234)
                    raise InvalidInputError(
                        where or spelling,
                        f"values must be strings or numbers, or mappings of name -> sub-job; got {current!r}",
                    )
                yield from self.push(task_skeleton, key, vals, batch_size, dry, path)
                continue
            for val in current:
                if all(x is None for x in val.values()):  # {name: null, ...}: its names, batched
                    yield from self.push(task_skeleton, key, list(val.keys()), batch_size, dry, path)
                    continue
                for name, subdata in val.items():  # a real mapping: one task (tree) per name
                    task = {**task_skeleton, key: [name]}
                    if isinstance(subdata, Mapping):
                        if next_attr:
                            sub_path = f"{where}[{name!r}]" if where is not None else None
                            yield from self.chunk_job(subdata, task, next_attr, dry, sub_path)
                        elif not dry:
                            yield {**task, **subdata}
                    elif subdata is None:
                        if not dry:
                            yield task
                    else:  # sosw: InvalidJob (scheduler.py:525)
                        raise InvalidInputError(
                            f"{where or spelling}[{name!r}]", f"must be a mapping (sub-job) or null, got {subdata!r}"
                        )


# ------------------------------------------------------------------------------------------------------ plan


@dataclass
class _Plan:
    """A validated job: what ``payloads`` will stream."""

    job: dict[str, Any]
    labourer: str
    chunker: _Chunker | None  # None: sosw queues the job as a single task
    first_day: datetime.date | None = None
    days: int = 0
    isolate_days: bool = False

    def date_tasks(self) -> Iterator[dict[str, Any]]:
        """scheduler.py:333 ``chunk_dates``: the job per day (isolate_days) or once with the whole date_list."""
        if self.first_day is None:
            yield self.job
        elif self.isolate_days:
            for day in iter_dates(self.first_day, self.days):
                yield {**self.job, "date_list": [day]}
        else:
            yield {**self.job, "date_list": list(iter_dates(self.first_day, self.days))}

    def payloads(self) -> Iterator[dict[str, Any]]:
        if self.chunker is None:  # scheduler.py:203: the job's own labourer_id, if any, wins here
            yield {"labourer_id": self.labourer, **self.job}
            return
        first = self.chunker.attrs[0]
        for task in self.date_tasks():
            for payload in self.chunker.chunk_job(task, {}, first, dry=False, path=None):
                payload["labourer_id"] = self.labourer  # scheduler.py:428: the skeleton is applied last
                yield payload


def _plan(event: Mapping[str, Any] | str, job_schema: Mapping[str, Any], today: datetime.date) -> _Plan:
    """Validate like sosw's ``__call__`` / ``parse_job_to_file`` and decide how the job will be chunked."""
    job, labourer = extract_job(event)
    chunker = _Chunker(chunkable_attrs(job_schema, job))
    try:
        if not chunker.needs_chunking(_plural(chunker.attrs[0]), job, path=""):
            return _Plan(job, labourer, None)

        rest = dict(job)
        period = rest.pop("period", None)
        isolate_days = bool(rest.pop("isolate_days", None))
        plan = _Plan(rest, labourer, chunker, isolate_days=isolate_days)
        if period:
            plan.first_day, plan.days = period_dates(period, today)
            if isolate_days and not plan.days:  # scheduler.py:383, an assert
                raise InvalidInputError("period", f"{period!r} gives no days to isolate (isolate_days is set)")
        # Every date task chunks alike (only the date string differs), so one dry run covers them all.
        sample = next(plan.date_tasks())
        for _ in chunker.chunk_job(sample, {}, chunker.attrs[0], dry=True, path=""):
            pass
        return plan
    except InvalidInputError:
        raise
    except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as exc:
        # Safety net for inputs JSON can't express (non-string keys, odd objects): sosw fails on them too.
        raise InvalidInputError("job", f"can't be chunked: {type(exc).__name__}: {exc}") from None
