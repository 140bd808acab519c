"""Filter expressions over solutions, e.g. `test_accuracy > 0.95 and sharpness < 20`, compiled
to SQL over the tall metrics table.

Grammar: comparisons `NAME OP NUMBER` (OP one of < <= > >= == !=) joined by `and`, `or`, `not`
and parentheses. A NAME is a metric of the job or an attribute (`id`, `node_id`, `depth`).
Errors point at the offending token.
"""

from __future__ import annotations

import contextlib
import math
import operator
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, not_, or_, select

from storage.models import Metric, Node, Solution

# Core tables, not ORM entities: statements built per request from them cost a fraction.
SOLUTIONS, NODES, METRICS = Solution.__table__, Node.__table__, Metric.__table__
ATTRIBUTES = {"id": SOLUTIONS.c.id, "node_id": SOLUTIONS.c.node_id, "depth": NODES.c.depth}
OPERATORS: dict[str, Callable] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "=": operator.eq,
    "!=": operator.ne,
}
MAX_LENGTH = 2000
MAX_NESTING = 16  # `not`s and parentheses inside one another; SQL parsers overflow past ~40
_TOKEN = re.compile(
    r"\s*(?:(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf\b)"
    r"|(?P<op><=|>=|==|!=|<|>|=)|(?P<paren>[()])|(?P<name>[A-Za-z_][A-Za-z0-9_.]*))"
)


class FilterError(ValueError):
    """A filter that does not parse or names an unknown metric; `str()` shows where."""

    def __init__(self, expression: str, position: int, message: str) -> None:
        self.expression, self.position, self.message = expression, position, message
        super().__init__(f"{message}\n  {expression}\n  {' ' * position}^")


@dataclass(frozen=True)
class Comparison:
    name: str
    op: str
    value: float
    position: int = 0


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or" | "not"
    items: tuple[Expression, ...]


Expression = Comparison | BoolOp


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    position: int


def _tokens(expression: str) -> list[_Token]:
    tokens, position = [], 0
    while position < len(expression):
        if expression[position:].strip() == "":
            break
        match = _TOKEN.match(expression, position)
        if match is None or match.end() == position:
            start = len(expression) - len(expression[position:].lstrip())
            raise FilterError(expression, start, f"unexpected character {expression[start]!r}")
        group = match.lastgroup
        text = match.group(group)
        kind = text if group == "name" and text in ("and", "or", "not") else group
        tokens.append(_Token(kind, text, match.start(group)))
        position = match.end()
    tokens.append(_Token("end", "", len(expression)))
    return tokens


class _Parser:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokens(expression)
        self.at = 0
        self.nesting = 0

    def error(self, token: _Token, message: str) -> FilterError:
        return FilterError(self.expression, token.position, message)

    def next(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def parse(self) -> Expression:
        expression = self.disjunction()
        token = self.peek()
        if token.kind != "end":
            raise self.error(token, f"expected 'and', 'or' or the end, got {token.text!r}")
        return expression

    def disjunction(self) -> Expression:
        items = [self.conjunction()]
        while self.peek().kind == "or":
            self.next()
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def conjunction(self) -> Expression:
        items = [self.negation()]
        while self.peek().kind == "and":
            self.next()
            items.append(self.negation())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def negation(self) -> Expression:
        token = self.peek()
        if token.kind == "not":
            self.next()
            with self.nested(token):
                return BoolOp("not", (self.negation(),))
        if token.kind == "paren" and token.text == "(":
            self.next()
            with self.nested(token):
                expression = self.disjunction()
            closing = self.next()
            if closing.text != ")":
                raise self.error(closing, f"expected ')', got {closing.text or 'the end'!r}")
            return expression
        return self.comparison()

    @contextlib.contextmanager
    def nested(self, token: _Token) -> Iterator[None]:
        """One level deeper into `not`s and parentheses, up to MAX_NESTING."""
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise self.error(
                token, f"a filter nests `not` and parentheses at most {MAX_NESTING} deep"
            )
        yield
        self.nesting -= 1

    def comparison(self) -> Comparison:
        name = self.next()
        if name.kind != "name":
            raise self.error(name, f"expected a metric name, got {name.text or 'the end'!r}")
        op = self.next()
        if op.kind != "op":
            raise self.error(op, f"expected one of < <= > >= == != after {name.text!r}")
        number = self.next()
        if number.kind != "number":
            raise self.error(number, f"expected a number, got {number.text or 'the end'!r}")
        value = float(number.text)
        if math.isnan(value):
            raise self.error(number, "NaN compares false with everything")
        return Comparison(name.text, op.text, value, name.position)


def comparisons(expression: Expression) -> Iterator[Comparison]:
    """Every comparison in the expression, left to right."""
    if isinstance(expression, Comparison):
        yield expression
    else:
        for item in expression.items:
            yield from comparisons(item)


def parse_filter(expression: str) -> Expression:
    """Parse `expression`; its names are checked apart (`check_names`), in one lookup.

    Raises:
        FilterError: bad syntax, an expression over 2000 characters, or nested deeper than 16.
    """
    if len(expression) > MAX_LENGTH:
        raise FilterError(expression[:40] + "...", 0, f"a filter is at most {MAX_LENGTH} chars")
    return _Parser(expression).parse()


def metric_names_of(expression: Expression) -> set[str]:
    """The names in the expression that are not attributes (so must be metrics)."""
    return {c.name for c in comparisons(expression) if c.name not in ATTRIBUTES}


def check_names(
    text: str,
    expression: Expression,
    present: Collection[str],
    known: Callable[[], Collection[str]],
) -> None:
    """Every name must be an attribute or in `present`; `known()` lists the metrics for the
    error message, only on an error.

    Raises:
        FilterError: at the first unknown name.
    """
    for comparison in comparisons(expression):
        if comparison.name not in ATTRIBUTES and comparison.name not in present:
            names = ", ".join(sorted({*known(), *ATTRIBUTES}))
            raise FilterError(
                text, comparison.position, f"unknown metric {comparison.name!r}; known: {names}"
            )


def compile_filter(expression: Expression) -> ColumnElement[bool]:
    """The SQL condition on the solutions table (joined with nodes) for a parsed filter."""
    if isinstance(expression, BoolOp):
        parts = [compile_filter(item) for item in expression.items]
        if expression.op == "not":
            return not_(parts[0])
        return (and_ if expression.op == "and" else or_)(*parts)
    compare = OPERATORS[expression.op]
    if expression.name in ATTRIBUTES:
        return compare(ATTRIBUTES[expression.name], expression.value)
    return exists(
        select(METRICS.c.solution_id).where(
            METRICS.c.solution_id == SOLUTIONS.c.id,
            METRICS.c.name == expression.name,
            compare(METRICS.c.value, expression.value),
        )
    )
