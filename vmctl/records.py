"""Frozen dataclasses whose methods are made the first time they are needed.

`@dataclass(frozen=True)` compiles an `__init__`, `__repr__`, `__eq__`, `__hash__`,
`__setattr__` and `__delattr__` for its class when the module is imported: for the ~45
classes of the Vagrantfile's settings (vmctl/vagrantfile/model.py) that was ~50 ms of every
`vmctl status`, which reads a kept evaluation back with pickle and needs none of them
(unpickling neither calls `__init__` nor sets attributes one by one).

    class ForwardedPort(Frozen):
        guest: int
        host: int | None = None

is `@dataclass(frozen=True)` on first use: constructing one, comparing, hashing, repr,
assigning to a field (FrozenInstanceError), or looking up `__dataclass_fields__` (so
`dataclasses.fields`, `asdict` and `replace` work as before). Until then the class holds
its annotations and defaults (a `field(...)` default is the Field object). The classes
must not inherit from each other.
"""

from __future__ import annotations

import threading
from dataclasses import Field, dataclass, field
from typing import Any, dataclass_transform

_lock = threading.RLock()
_made: set[type] = set()


def make(cls: type) -> None:
    """Apply @dataclass(frozen=True) to CLS (a Frozen subclass), once."""
    if cls in _made:
        return
    with _lock:
        if cls not in _made:
            dataclass(frozen=True)(cls)
            _made.add(cls)


class _Made:
    """A class attribute that @dataclass sets on the class itself; looking it up on a
    subclass of Frozen makes that subclass first."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type) -> Any:
        if owner is Frozen:  # the base is no dataclass (dataclass() asks it for fields)
            raise AttributeError(self.name)
        make(owner)
        return getattr(owner if obj is None else obj, self.name)


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
class Frozen:
    """The base of lazily made frozen dataclasses: each method here makes the instance's
    class a dataclass, which sets the real method on it, and calls that."""

    __slots__ = ()
    __dataclass_fields__ = _Made()
    __dataclass_params__ = _Made()
    __match_args__ = _Made()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        make(type(self))
        type(self).__init__(self, *args, **kwargs)

    def __repr__(self) -> str:
        make(type(self))
        return type(self).__repr__(self)

    def __eq__(self, other: object) -> bool:
        make(type(self))
        return type(self).__eq__(self, other)

    def __hash__(self) -> int:
        make(type(self))
        return type(self).__hash__(self)

    def __setattr__(self, name: str, value: Any) -> None:
        make(type(self))
        type(self).__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        make(type(self))
        type(self).__delattr__(self, name)
