"""Box versions and Vagrant-style version constraints.

Versions compare like RubyGems (what Vagrant uses): dot-separated segments, numbers compare
as numbers, trailing zeros do not count ("1.0" == "1.0.0"), and a segment with letters marks
a pre-release that sorts before the release ("1.0.0.beta1" < "1.0.0").

Constraints are a comma-separated list that must all hold:

    >>> parse_constraint(">= 1.2, < 2").allows(parse_version("1.9.3"))
    True
    >>> parse_constraint("~> 1.2").allows(parse_version("2.0"))
    False

Operators: ``=``, ``!=``, ``>``, ``<``, ``>=``, ``<=``, ``~>`` (pessimistic: ``~> 1.2`` means
``>= 1.2, < 2``; ``~> 1.2.3`` means ``>= 1.2.3, < 1.3``); a bare version means ``=``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from vmctl.errors import BoxError

_VERSION_RE = re.compile(r"^[0-9]+[0-9A-Za-z]*(?:[.-][0-9A-Za-z]+)*$")
_SEGMENT_RE = re.compile(r"[0-9]+|[A-Za-z]+")
_CLAUSE_RE = re.compile(r"^\s*(~>|>=|<=|!=|=|>|<)?\s*(\S+)\s*$")

Segment = int | str
MAX_VERSION_LENGTH = 128


@functools.total_ordering
@dataclass(frozen=True)
class Version:
    """A parsed box version; `text` is what the catalog or the user wrote."""

    text: str
    segments: tuple[Segment, ...]

    @property
    def prerelease(self) -> bool:
        return any(isinstance(s, str) for s in self.segments)

    def _canonical(self) -> tuple[Segment, ...]:
        segs = list(self.segments)
        while len(segs) > 1 and segs[-1] == 0:
            segs.pop()
        return tuple(segs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._canonical() == other._canonical()

    def __hash__(self) -> int:
        return hash(self._canonical())

    def __lt__(self, other: Version) -> bool:
        return _compare(self.segments, other.segments) < 0

    def __str__(self) -> str:
        return self.text


def _compare(a: tuple[Segment, ...], b: tuple[Segment, ...]) -> int:
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else 0
        y = b[i] if i < len(b) else 0
        if x == y:
            continue
        if isinstance(x, str) and isinstance(y, int):
            return -1
        if isinstance(x, int) and isinstance(y, str):
            return 1
        return -1 if x < y else 1  # type: ignore[operator]
    return 0


def parse_version(text: str) -> Version:
    """TEXT as a Version, or BoxError quoting it."""
    value = str(text).strip()
    # Checked for length first: the pattern backtracks over long runs of digits, and a
    # catalog or a Vagrantfile can hand in any string.
    if len(value) > MAX_VERSION_LENGTH or not _VERSION_RE.match(value):
        raise BoxError(
            f"invalid box version {str(text)[:80]!r}",
            hint="versions are dot-separated numbers, like 1.0.3 (a suffix like 1.0.0.beta1 marks a pre-release)",
        )
    segments: list[Segment] = []
    for part in _SEGMENT_RE.findall(value):
        segments.append(int(part) if part.isdigit() else part)
    return Version(value, tuple(segments))


def _bump(version: Version) -> Version:
    """The upper bound of ``~> VERSION`` (RubyGems' Version#bump)."""
    segs = list(version.segments)
    while segs and isinstance(segs[-1], str):
        segs.pop()
    if len(segs) > 1:
        segs.pop()
    if not segs:
        segs = [0]
    segs[-1] = int(segs[-1]) + 1
    text = ".".join(str(s) for s in segs)
    return Version(text, tuple(segs))


_OPS: dict[str, Callable[[Version, Version], bool]] = {
    "=": lambda v, r: v == r,
    "!=": lambda v, r: v != r,
    ">": lambda v, r: v > r,
    "<": lambda v, r: v < r,
    ">=": lambda v, r: v >= r,
    "<=": lambda v, r: v <= r,
    "~>": lambda v, r: r <= v < _bump(r),
}


@dataclass(frozen=True)
class Clause:
    op: str
    version: Version

    def allows(self, version: Version) -> bool:
        return _OPS[self.op](version, self.version)

    def __str__(self) -> str:
        return f"{self.op} {self.version}"


@dataclass(frozen=True)
class Constraint:
    """All of `clauses` must hold; no clauses allows every version."""

    text: str
    clauses: tuple[Clause, ...]

    def allows(self, version: Version) -> bool:
        return all(c.allows(version) for c in self.clauses)

    def __str__(self) -> str:
        return self.text


ANY = Constraint("", ())


def parse_constraint(text: str | None) -> Constraint:
    """A Vagrant-style constraint (``">= 1.2, < 2"``), or BoxError quoting the bad part."""
    if text is None or not str(text).strip():
        return ANY
    if len(str(text)) > 16 * MAX_VERSION_LENGTH:
        raise BoxError(f"invalid version constraint {str(text)[:60]!r}...: it is too long")
    clauses: list[Clause] = []
    for part in str(text).split(","):
        match = _CLAUSE_RE.match(part)
        if not match:
            raise BoxError(
                f"invalid version constraint {text!r}: cannot read {part.strip()!r}",
                hint='write constraints as Vagrant does, for example ">= 1.2, < 2", "= 1.0.3" or "~> 1.2"',
            )
        op, ver = match.group(1) or "=", match.group(2)
        try:
            version = parse_version(ver)
        except BoxError as exc:
            raise BoxError(
                f"invalid version constraint {text!r}: {ver!r} is not a version",
                hint='write constraints as Vagrant does, for example ">= 1.2, < 2", "= 1.0.3" or "~> 1.2"',
            ) from exc
        clauses.append(Clause(op, version))
    return Constraint(str(text).strip(), tuple(clauses))


def newest(versions: list[Version], constraint: Constraint) -> Version | None:
    """The newest of VERSIONS that CONSTRAINT allows, or None."""
    allowed = [v for v in versions if constraint.allows(v)]
    return max(allowed) if allowed else None
