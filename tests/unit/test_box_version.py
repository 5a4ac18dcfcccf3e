"""Box versions and Vagrant-style constraints."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmctl.boxes.version import newest, parse_constraint, parse_version
from vmctl.errors import BoxError


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("1.0.0", "1.0.1"),
        ("1.9", "1.10"),
        ("1.9.9", "2"),
        ("1.0.0.beta1", "1.0.0"),
        ("1.0.0.alpha", "1.0.0.beta"),
        ("0", "0.0.1"),
        ("2024.01.05", "2024.1.6"),
    ],
)
def test_versions_order(low: str, high: str) -> None:
    assert parse_version(low) < parse_version(high)
    assert parse_version(high) > parse_version(low)


def test_trailing_zeros_do_not_count() -> None:
    assert parse_version("1.0") == parse_version("1.0.0")
    assert hash(parse_version("1")) == hash(parse_version("1.0.0"))
    assert str(parse_version("1.0")) == "1.0"


@pytest.mark.parametrize("text", ["", "v1.0", "1..2", "1.0/2", "../1", "1.0 beta", ".1"])
def test_invalid_versions_are_quoted(text: str) -> None:
    with pytest.raises(BoxError) as exc:
        parse_version(text)
    assert repr(text) in exc.value.message


@pytest.mark.parametrize(
    ("constraint", "allowed", "refused"),
    [
        (">= 1.2, < 2", ["1.2", "1.2.0", "1.9.9"], ["1.1.9", "2", "2.0.1"]),
        ("= 1.0.3", ["1.0.3", "1.0.3.0"], ["1.0.2", "1.0.4"]),
        ("1.0.3", ["1.0.3"], ["1.0.30", "1.0"]),
        ("~> 1.2", ["1.2", "1.3", "1.99"], ["1.1", "2.0"]),
        ("~> 1.2.3", ["1.2.3", "1.2.9"], ["1.2.2", "1.3"]),
        ("~> 1", ["1", "1.5"], ["2", "0.9"]),
        ("> 1.0", ["1.0.1", "3"], ["1.0", "0.5"]),
        ("<= 1.0", ["1.0", "0.1"], ["1.0.1"]),
        ("!= 1.5", ["1.4", "1.6"], ["1.5", "1.5.0"]),
        (">=1.0,<1.1", ["1.0.5"], ["1.1"]),
        ("", ["0", "99"], []),
    ],
)
def test_constraints(constraint: str, allowed: list[str], refused: list[str]) -> None:
    c = parse_constraint(constraint)
    for v in allowed:
        assert c.allows(parse_version(v)), f"{constraint!r} should allow {v}"
    for v in refused:
        assert not c.allows(parse_version(v)), f"{constraint!r} should refuse {v}"


@pytest.mark.parametrize("text", [">= ", ">> 1.0", "=> 1.0", ">= 1.x.", "1.0,,2", "~>", ">= 1.0 2.0", "lol"])
def test_constraint_errors_quote_the_value(text: str) -> None:
    with pytest.raises(BoxError) as exc:
        parse_constraint(text)
    assert repr(text) in exc.value.message
    assert exc.value.hint and ">= 1.2, < 2" in exc.value.hint


def test_newest_allowed() -> None:
    versions = [parse_version(v) for v in ["1.0.0", "1.2.0", "1.10.0", "2.0.0"]]
    assert str(newest(versions, parse_constraint("< 2"))) == "1.10.0"
    assert str(newest(versions, parse_constraint(""))) == "2.0.0"
    assert newest(versions, parse_constraint("> 5")) is None


@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=4),
    st.lists(st.integers(0, 50), min_size=1, max_size=4),
)
def test_numeric_versions_compare_like_padded_tuples(a: list[int], b: list[int]) -> None:
    va = parse_version(".".join(map(str, a)))
    vb = parse_version(".".join(map(str, b)))
    n = max(len(a), len(b))
    pa, pb = a + [0] * (n - len(a)), b + [0] * (n - len(b))
    assert (va < vb) == (pa < pb)
    assert (va == vb) == (pa == pb)
