"""Reading solution sets back: jobs, solutions filtered, sorted and paged (keyset), the metrics
of many solutions as a matrix, and the lineage DAG."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Annotated, Any, TypeVar

import networkx as nx
import numpy as np
from pydantic import Field
from pydantic_core import from_json
from sqlalchemy import ColumnElement, Select, and_, bindparam, exists, or_, select
from sqlalchemy.orm import Session

from ridgerider.json_shapes import node_json, ride_json, ride_labels
from ridgerider.search.fingerprint import from_text
from storage.filters import (
    ATTRIBUTES,
    METRICS,
    NODES,
    SOLUTIONS,
    Expression,
    check_names,
    compile_filter,
    metric_names_of,
    parse_filter,
)
from storage.models import Job, Metric, Node, Ride, Solution
from storage.secrets import CURSOR, service_secret, sign, verify

ROOT_FINGERPRINT = hashlib.sha256(b"root").hexdigest()  # the start's: the empty path's
MAX_PAGE = 1000
MAX_CURSOR = 4096  # characters: a cursor holds its filter (at most 2000), base64-encoded
SORT_KEY = METRICS.alias("sort_key")  # made once: an alias builds its columns when made
GRAPH_NODE_KEYS = ("kind", "index", "loss", "grad_norm", "depth", "state", "fingerprint")
LINEAGE_KEYS = ("from", "to", "eigen_index", "sign", "eigenvalue")
Row = TypeVar("Row", Node, Ride, Solution)


class QueryError(ValueError):
    """A sort key, cursor or page size that cannot be used; names the parameter."""


class ForgedCursorError(QueryError):
    """A cursor this service did not make, or one altered since."""


@dataclass(frozen=True)
class SolutionRow:
    """A solution as every interface shows it (the HTTP API's schema is this class)."""

    id: int
    job_id: int
    node_id: int
    depth: int
    fingerprint: Annotated[str, Field(description="the rides from the start, e.g. 0+.8-")]
    weights_sha256: str
    metrics: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SolutionRow:
        """The row `to_json` gave (as the HTTP API sends it)."""
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class Page:
    items: list[SolutionRow]
    next_cursor: str | None


def list_jobs(
    session: Session,
    *,
    owner: str | None = None,
    status: str | None = None,
    limit: int = 50,
    after: int | None = None,
) -> list[Job]:
    """Jobs, newest first, optionally one owner's or in one status; `after` is the last id of
    the previous page."""
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if owner is not None:
        query = query.where(Job.owner == owner)
    if status is not None:
        query = query.where(Job.status == status)
    if after is not None:
        query = query.where(Job.id < after)
    return list(session.scalars(query))


def metric_names(session: Session, job_id: int) -> list[str]:
    """The names of the metrics the job's solutions have (a scan: for error messages)."""
    return sorted(session.scalars(select(Metric.name).where(Metric.job_id == job_id).distinct()))


def present_metrics(session: Session, job_id: int, names: Collection[str]) -> set[str]:
    """Which of `names` some solution of the job has: one statement, one index probe a name."""
    names = sorted(set(names))
    if not names:
        return set()
    values = {"job_id": job_id} | {f"n{i}": name for i, name in enumerate(names)}
    row = session.connection().execute(_presence_probe(len(names)), values).one()
    return {name for name, present in zip(names, row, strict=True) if present}


@functools.lru_cache(maxsize=32)
def _presence_probe(count: int) -> Select:
    """The statement for `present_metrics` with `count` names, built once."""
    job_id = bindparam("job_id")
    return select(
        *(
            exists().where(METRICS.c.job_id == job_id, METRICS.c.name == bindparam(f"n{i}"))
            for i in range(count)
        )
    )


def has_metric(session: Session, job_id: int, name: str) -> bool:
    """Whether any solution of the job has the metric `name`."""
    return name in present_metrics(session, job_id, [name])


def parse_job_filter(session: Session, job_id: int, expression: str) -> Expression:
    """Parse a filter over the job's metrics (see `storage.filters`).

    Raises:
        FilterError: the filter does not parse or names an unknown metric.
    """
    parsed = parse_filter(expression)
    present = present_metrics(session, job_id, metric_names_of(parsed))
    check_names(expression, parsed, present, lambda: metric_names(session, job_id))
    return parsed


def filtered_solutions(
    job_id: int, expression: Expression | None, sort_metric: str | None = None
) -> tuple[Select, ColumnElement]:
    """The job's solutions passing the parsed `expression` (id, node_id, depth, path,
    weights_sha256, metrics_json), and the sort key's column. Sorting by a metric drives the
    query from that metric's (job, name, value) index, already in order; the solutions table is
    then only joined, so no planner prefers a scan of the job's solutions followed by a sort."""
    columns = (
        SOLUTIONS.c.id,
        SOLUTIONS.c.node_id,
        NODES.c.depth,
        NODES.c.path,
        SOLUTIONS.c.weights_sha256,
        SOLUTIONS.c.metrics_json,
    )
    if sort_metric is None:
        query = select(*columns).where(SOLUTIONS.c.job_id == job_id)
        key = SOLUTIONS.c.id
    else:
        key_row = SORT_KEY
        key = key_row.c.value
        query = (
            select(*columns)
            .select_from(key_row)
            .join(SOLUTIONS, SOLUTIONS.c.id == key_row.c.solution_id)
            .where(key_row.c.job_id == job_id, key_row.c.name == sort_metric)
        )
    query = query.join(NODES, NODES.c.id == SOLUTIONS.c.node_id)
    if expression is not None:
        query = query.where(compile_filter(expression))
    return query, key


def solutions_page(
    session: Session,
    job_id: int,
    *,
    where: str | None = None,
    sort: str = "id",
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """One page of the job's solutions passing `where`, sorted by `sort` (a metric or attribute,
    `-name` for descending; ties broken by id), after the opaque `cursor` of the previous page.

    Keyset pagination: a page starts strictly after the previous page's last (value, id), so it
    is stable under inserts. Solutions lacking the sort metric are left out. Two statements:
    the names' existence, and the page with its metrics.

    Raises:
        FilterError: the filter does not parse or names an unknown metric.
        QueryError: unknown sort key, a limit outside [1, 1000], or a cursor from another query.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise QueryError(f"limit must be in [1, {MAX_PAGE}], got {limit}")
    descending = sort.startswith("-")
    name = sort.lstrip("-+")
    parsed = parse_filter(where) if where else None
    wanted = metric_names_of(parsed) if parsed is not None else set()
    if name not in ATTRIBUTES:
        wanted.add(name)
    present = present_metrics(session, job_id, wanted)
    if name not in ATTRIBUTES and name not in present:
        known = ", ".join(sorted([*ATTRIBUTES, *metric_names(session, job_id)]))
        raise QueryError(f"sort: unknown metric {name!r}; known: {known}")
    if parsed is not None:
        check_names(where, parsed, present, lambda: metric_names(session, job_id))
    if name in ATTRIBUTES:
        query, _ = filtered_solutions(job_id, parsed)
        key = ATTRIBUTES[name]
    else:
        query, key = filtered_solutions(job_id, parsed, sort_metric=name)
    query = query.add_columns(key.label("sort_value"))
    if cursor is not None:
        value, last_id = _read_cursor(session, cursor, job_id, sort, where)
        beyond = key < value if descending else key > value
        query = query.where(or_(beyond, and_(key == value, SOLUTIONS.c.id > last_id)))
    query = query.order_by(key.desc() if descending else key.asc(), SOLUTIONS.c.id.asc())
    rows = session.connection().execute(query.limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [
        SolutionRow(
            row.id,
            job_id,
            row.node_id,
            row.depth,
            row.path,
            row.weights_sha256,
            from_json(row.metrics_json),
        )
        for row in rows
    ]
    next_cursor = None
    if more:
        last = rows[-1]
        next_cursor = _make_cursor(session, job_id, last.sort_value, last.id, sort, where)
    return Page(items, next_cursor)


def _make_cursor(
    session: Session, job_id: int, value: float, last_id: int, sort: str, expression: str | None
) -> str:
    """An opaque, signed position: where the page ended and for which query."""
    text = json.dumps({"j": job_id, "v": value, "id": last_id, "s": sort, "f": expression or ""})
    payload = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    return f"{payload}.{sign(service_secret(session, CURSOR), payload.encode())}"


def _read_cursor(
    session: Session, cursor: str, job_id: int, sort: str, expression: str | None
) -> tuple[float, int]:
    """The position a cursor of `_make_cursor` holds, for this query.

    Raises:
        ForgedCursorError: a cursor this service did not make, or altered.
        QueryError: another query's cursor.
    """
    payload, _, tag = cursor.partition(".")
    forged = ForgedCursorError("cursor: not a cursor this service made")
    if len(cursor) > MAX_CURSOR or not verify(
        service_secret(session, CURSOR), payload.encode(), tag
    ):
        raise forged
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        value, last_id = float(data["v"]), int(data["id"])
        same = (data["j"], data["s"], data["f"]) == (job_id, sort, expression or "")
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise forged from None
    if not same:
        raise QueryError("cursor: it belongs to a query with another job, sort or filter")
    return value, last_id


def solution_rows(session: Session, ids: Sequence[int]) -> list[SolutionRow]:
    """The solutions `ids` with their metrics, in that order (unknown ids are left out)."""
    found = {
        solution.id: (solution, depth, path)
        for solution, depth, path in session.execute(
            select(Solution, Node.depth, Node.path)
            .join(Node, Node.id == Solution.node_id)
            .where(Solution.id.in_(ids))
        )
    }
    metrics = solution_metrics(session, list(found))
    return [
        SolutionRow(i, s.job_id, s.node_id, depth, path, s.weights_sha256, metrics[i])
        for i in ids
        if i in found
        for s, depth, path in [found[i]]
    ]


def solution_metrics(session: Session, ids: Sequence[int]) -> dict[int, dict[str, float]]:
    """The metrics of each of the solutions `ids`."""
    metrics: dict[int, dict[str, float]] = {i: {} for i in ids}
    if ids:
        found = select(SOLUTIONS.c.id, SOLUTIONS.c.metrics_json).where(SOLUTIONS.c.id.in_(ids))
        for solution_id, text in session.connection().execute(found).all():
            metrics[solution_id] = from_json(text)
    return metrics


def metric_matrix(
    session: Session, job_id: int, names: Sequence[str], where: str | None = None
) -> tuple[list[int], np.ndarray]:
    """Solution ids passing `where` that have every metric in `names`, and their values
    (one row per solution, one column per name).

    Raises:
        QueryError: a name is not a metric of the job.
    """
    present = present_metrics(session, job_id, names)
    for name in names:
        if name not in present:
            known = ", ".join(metric_names(session, job_id))
            if not known:
                raise QueryError(f"job {job_id} has no solutions to choose from")
            raise QueryError(f"unknown metric {name!r}; known: {known}")
    parsed = parse_job_filter(session, job_id, where) if where else None
    passing = filtered_solutions(job_id, parsed)[0].with_only_columns(SOLUTIONS.c.id).subquery()
    rows = session.execute(
        select(Metric.solution_id, Metric.name, Metric.value).where(
            Metric.job_id == job_id,
            Metric.name.in_(names),
            Metric.solution_id.in_(select(passing.c.id)),
        )
    )
    column = {name: i for i, name in enumerate(names)}
    values: dict[int, np.ndarray] = {}
    for solution_id, name, value in rows:
        values.setdefault(solution_id, np.full(len(names), np.nan))[column[name]] = value
    ids = sorted(i for i, row in values.items() if not np.isnan(row).any())
    matrix = np.array([values[i] for i in ids]).reshape(len(ids), len(names))
    return ids, matrix


def job_rows(session: Session, model: type[Row], job_id: int, after: int = 0) -> Sequence[Row]:
    """The job's nodes, rides or solutions (`model`) with ids above `after`, by id."""
    query = select(model).where(model.job_id == job_id, model.id > after).order_by(model.id)
    return session.scalars(query).all()


def part(fields: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The `keys` of a record (`stored_node`, `stored_ride`), in that order."""
    return {key: fields[key] for key in keys}


def root_node(session: Session, job_id: int) -> Node | None:
    """The job's root node (its start), if it has started."""
    return session.scalar(
        select(Node).where(Node.job_id == job_id, Node.fingerprint == ROOT_FINGERPRINT)
    )


def stored_node(node: Node) -> dict[str, Any]:
    """A stored node as JSON: the engine's `node_json` of it, and its state. A job's document
    shows it whole; its events and graph show parts (`storage.events`, `GRAPH_NODE_KEYS`)."""
    return node_json(node.id, node, node.depth, node.path) | {"state": node.state}


def stored_ride(ride: Ride) -> dict[str, Any]:
    """A stored ride as JSON: its id and the engine's `ride_json` of it. A job's document shows
    it whole (a failed one with its failure); its events (with its state and failure) and a
    solution's lineage show parts (`storage.events`, `LINEAGE_KEYS`)."""
    return {"id": ride.id} | ride_json(ride.from_node_id, ride.to_node_id, ride_labels(ride, ride))


def lineage(session: Session, node_id: int) -> list[dict[str, Any]]:
    """The rides from the start to node `node_id`, as its fingerprint (`Node.path`) names them:
    one indexed lookup a ride, never the job's whole DAG."""
    node = session.get(Node, node_id)
    at = root_node(session, node.job_id).id
    rides = []
    for eigen_index, direction in from_text(node.path):
        ride = session.scalar(
            select(Ride).where(
                Ride.from_node_id == at, Ride.eigen_index == eigen_index, Ride.sign == direction
            )
        )
        rides.append(part(stored_ride(ride), LINEAGE_KEYS))
        at = ride.to_node_id
    return rides


def lineage_graph(session: Session, job_id: int) -> nx.MultiDiGraph:
    """The job's DAG: nodes are points (kind, index, loss, grad_norm, depth, fingerprint, state,
    solution id), edges are rides (eigen index, sign, eigenvalue, steps, HVPs, end reason);
    failed rides are left out."""
    graph = nx.MultiDiGraph(job_id=job_id)
    solutions = dict(
        session.execute(
            select(Solution.node_id, Solution.id).where(Solution.job_id == job_id)
        ).all()
    )
    for node in job_rows(session, Node, job_id):
        attributes = part(stored_node(node), GRAPH_NODE_KEYS)
        graph.add_node(node.id, **attributes, solution_id=solutions.get(node.id, -1))
    rides = select(Ride).where(Ride.job_id == job_id, Ride.state == "done").order_by(Ride.id)
    for ride in session.scalars(rides):
        graph.add_edge(ride.from_node_id, ride.to_node_id, key=ride.id, **ride_labels(ride, ride))
    return graph
