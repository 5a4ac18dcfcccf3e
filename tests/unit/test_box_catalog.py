"""Parsing Vagrant box catalogs and choosing a version from them."""

from __future__ import annotations

import pytest

from vmctl.boxes import catalog as catalog_mod
from vmctl.boxes.catalog import newest_version, parse_catalog, select_version
from vmctl.boxes.version import parse_constraint
from vmctl.errors import BoxError

CATALOG = {
    "name": "vmctl/tiny",
    "description": "a tiny box",
    "versions": [
        {"version": "1.0.0", "providers": [
            {"name": "libvirt", "url": "tiny-1.0.0.box", "checksum_type": "sha256", "checksum": "a" * 64},
            {"name": "virtualbox", "url": "vb-1.0.0.box"},
        ]},
        {"version": "1.2.0", "providers": [
            {"name": "libvirt", "url": "https://mirror.example/tiny-1.2.0.box", "checksum_type": "SHA512", "checksum": "B" * 128},
        ]},
        {"version": "1.10.0", "providers": [{"name": "libvirt", "url": "../other/tiny-1.10.0.box"}]},
        {"version": "2.0.0", "providers": [{"name": "virtualbox", "url": "vb-2.0.0.box"}]},
    ],
}
URL = "http://boxes.example/catalogs/tiny.json"


def test_parse_resolves_relative_urls_against_the_catalog() -> None:
    cat = parse_catalog(CATALOG, URL)
    assert cat.name == "vmctl/tiny"
    assert cat.description == "a tiny box"
    assert [str(v.version) for v in cat.versions] == ["1.0.0", "1.2.0", "1.10.0", "2.0.0"]
    first = cat.versions[0].provider("libvirt")
    assert first is not None
    assert first.url == "http://boxes.example/catalogs/tiny-1.0.0.box"
    assert (first.checksum_type, first.checksum) == ("sha256", "a" * 64)
    second = cat.versions[1].provider()
    assert second is not None and second.url == "https://mirror.example/tiny-1.2.0.box"
    assert (second.checksum_type, second.checksum) == ("sha512", "b" * 128)
    third = cat.versions[2].provider()
    assert third is not None and third.url == "http://boxes.example/other/tiny-1.10.0.box"


def test_parse_resolves_relative_urls_of_a_local_catalog() -> None:
    cat = parse_catalog(CATALOG, "file:///srv/boxes/tiny.json")
    p = cat.versions[0].provider()
    assert p is not None and p.url == "file:///srv/boxes/tiny-1.0.0.box"


@pytest.mark.parametrize(
    ("constraint", "expected"),
    [
        (None, "1.10.0"),  # 2.0.0 has no libvirt provider
        ("< 1.10", "1.2.0"),
        ("= 1.0.0", "1.0.0"),
        ("~> 1.0.0", "1.0.0"),
        (">= 1.2, < 2", "1.10.0"),
        ("!= 1.10.0", "1.2.0"),
    ],
)
def test_select_newest_version_with_libvirt(constraint: str | None, expected: str) -> None:
    cat = parse_catalog(CATALOG, URL)
    version, provider = select_version(cat, parse_constraint(constraint))
    assert str(version.version) == expected
    assert provider.name == "libvirt"


def test_select_nothing_satisfies_lists_versions() -> None:
    cat = parse_catalog(CATALOG, URL)
    with pytest.raises(BoxError) as exc:
        select_version(cat, parse_constraint(">= 3"))
    assert "'>= 3'" in exc.value.message
    assert "1.0.0, 1.2.0, 1.10.0" in exc.value.message
    assert "2.0.0" not in exc.value.message


def test_select_no_libvirt_provider_at_all() -> None:
    data = {"name": "x/vb", "versions": [{"version": "1", "providers": [{"name": "virtualbox", "url": "a.box"}]}]}
    with pytest.raises(BoxError) as exc:
        select_version(parse_catalog(data, URL))
    assert "no libvirt version" in exc.value.message
    assert "virtualbox" in exc.value.message


def test_empty_catalog() -> None:
    with pytest.raises(BoxError, match="lists no versions"):
        select_version(parse_catalog({"name": "x/y", "versions": []}, URL))


def test_newest_version_for_outdated() -> None:
    assert str(newest_version(parse_catalog(CATALOG, URL))) == "1.10.0"


def test_architecture_preference(monkeypatch: pytest.MonkeyPatch) -> None:
    data = {"name": "x/arch", "versions": [{"version": "1", "providers": [
        {"name": "libvirt", "url": "arm.box", "architecture": "arm64"},
        {"name": "libvirt", "url": "amd.box", "architecture": "amd64"},
        {"name": "libvirt", "url": "default.box", "architecture": "unknown", "default_architecture": True},
    ]}]}
    monkeypatch.setattr(catalog_mod, "host_architecture", lambda: "amd64")
    assert select_version(parse_catalog(data, URL))[1].url.endswith("/amd.box")
    monkeypatch.setattr(catalog_mod, "host_architecture", lambda: "riscv64")
    assert select_version(parse_catalog(data, URL))[1].url.endswith("/default.box")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "not a JSON object"),
        ({"versions": []}, '"name"'),
        ({"name": "x/y"}, '"versions"'),
        ({"name": "x/y", "versions": {}}, '"versions"'),
        ({"name": "x/y", "versions": [{"providers": []}]}, 'versions[0] has no "version"'),
        ({"name": "x/y", "versions": [{"version": "one"}]}, "invalid box version 'one'"),
        ({"name": "x/y", "versions": [{"version": "1", "providers": [{"name": "libvirt"}]}]}, 'has no "url"'),
        ({"name": "x/y", "versions": [{"version": "1", "providers": [
            {"name": "libvirt", "url": "a", "checksum_type": "crc32", "checksum": "00"}]}]}, "crc32"),
        ({"name": "x/y", "versions": [{"version": "1", "providers": [
            {"name": "libvirt", "url": "a", "checksum": "00"}]}]}, "without the other"),
    ],
)
def test_invalid_catalogs_say_what_is_wrong(data: object, problem: str) -> None:
    with pytest.raises(BoxError) as exc:
        parse_catalog(data, URL)
    assert URL in exc.value.message
    assert problem in exc.value.message
