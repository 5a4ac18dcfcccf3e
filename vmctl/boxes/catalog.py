"""Vagrant's versioned box catalog ("metadata") JSON, and choosing a version from it.

    {
      "name": "vmctl/tiny",
      "description": "...",
      "versions": [
        {"version": "1.0.0",
         "providers": [{"name": "libvirt", "url": "tiny-1.0.0.box",
                        "checksum_type": "sha256", "checksum": "..."}]}
      ]
    }

Provider URLs may be relative: they are resolved against the catalog's own URL. Newer
catalogs also give providers an ``architecture`` (and ``default_architecture``); when a version
has several libvirt providers, the one for this machine's architecture wins.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from vmctl.boxes.installed import PROVIDER
from vmctl.boxes.version import ANY, Constraint, Version, parse_version
from vmctl.errors import BoxError

CHECKSUM_TYPES = ("sha256", "sha512", "sha384", "sha1", "md5")


@dataclass(frozen=True)
class CatalogProvider:
    name: str
    url: str  # resolved against the catalog URL
    checksum_type: str | None = None
    checksum: str | None = None
    architecture: str | None = None
    default_architecture: bool = False


@dataclass(frozen=True)
class CatalogVersion:
    version: Version
    providers: tuple[CatalogProvider, ...]

    def provider(self, name: str = PROVIDER) -> CatalogProvider | None:
        """The provider NAME for this machine's architecture (or the default one)."""
        candidates = [p for p in self.providers if p.name == name]
        if not candidates:
            return None
        arch = host_architecture()
        for p in candidates:
            if p.architecture == arch:
                return p
        for p in candidates:
            if p.default_architecture or p.architecture in (None, "unknown"):
                return p
        return None


@dataclass(frozen=True)
class Catalog:
    name: str
    url: str
    versions: tuple[CatalogVersion, ...]
    description: str | None = None


def host_architecture() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "i686": "i386", "i386": "i386"}.get(
        machine, machine
    )


def parse_catalog(data: Any, url: str) -> Catalog:
    """DATA (decoded JSON read from URL) as a Catalog, or BoxError naming what is wrong."""

    def bad(problem: str) -> BoxError:
        return BoxError(
            f"the box catalog {url} is not valid: {problem}",
            hint="a catalog is Vagrant's box metadata JSON: name, versions[].version, "
            "versions[].providers[] with name, url, checksum_type, checksum",
        )

    if not isinstance(data, dict):
        raise bad("it is not a JSON object")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise bad('"name" is missing or not a string')
    versions_data = data.get("versions")
    if not isinstance(versions_data, list):
        raise bad('"versions" is missing or not a list')
    versions: list[CatalogVersion] = []
    for i, entry in enumerate(versions_data):
        if not isinstance(entry, dict):
            raise bad(f"versions[{i}] is not an object")
        raw_version = entry.get("version")
        if not isinstance(raw_version, str | int | float) or isinstance(raw_version, bool):
            raise bad(f'versions[{i}] has no "version"')
        try:
            version = parse_version(str(raw_version))
        except BoxError as exc:
            raise bad(f"versions[{i}]: {exc.message}") from exc
        providers_data = entry.get("providers", [])
        if not isinstance(providers_data, list):
            raise bad(f'versions[{i}] ("{version}"): "providers" is not a list')
        providers: list[CatalogProvider] = []
        for j, p in enumerate(providers_data):
            where = f'versions[{i}] ("{version}").providers[{j}]'
            if not isinstance(p, dict):
                raise bad(f"{where} is not an object")
            pname = p.get("name")
            purl = p.get("url")
            if not isinstance(pname, str) or not pname:
                raise bad(f'{where} has no "name"')
            if not isinstance(purl, str) or not purl:
                raise bad(f'{where} ({pname}) has no "url"')
            ctype = p.get("checksum_type")
            csum = p.get("checksum")
            if ctype in ("", None):
                ctype = None
            if csum in ("", None):
                csum = None
            if ctype is not None:
                ctype = str(ctype).lower()
                if ctype not in CHECKSUM_TYPES:
                    raise bad(
                        f"{where} ({pname}) has checksum_type {ctype!r}; "
                        f"expected one of {', '.join(CHECKSUM_TYPES)}"
                    )
            if (ctype is None) != (csum is None):
                raise bad(f"{where} ({pname}) gives one of checksum and checksum_type without the other")
            providers.append(
                CatalogProvider(
                    name=pname,
                    url=urljoin(url, purl),
                    checksum_type=ctype,
                    checksum=str(csum).lower() if csum is not None else None,
                    architecture=p.get("architecture") if isinstance(p.get("architecture"), str) else None,
                    default_architecture=p.get("default_architecture") is True,
                )
            )
        versions.append(CatalogVersion(version, tuple(providers)))
    description = data.get("description")
    return Catalog(
        name=name.strip(),
        url=url,
        versions=tuple(versions),
        description=description if isinstance(description, str) else None,
    )


def select_version(
    catalog: Catalog, constraint: Constraint = ANY, provider: str = PROVIDER
) -> tuple[CatalogVersion, CatalogProvider]:
    """The newest version CONSTRAINT allows that has PROVIDER, or BoxError saying why not."""
    with_provider = [v for v in catalog.versions if v.provider(provider) is not None]
    allowed = [v for v in with_provider if constraint.allows(v.version)]
    if allowed:
        best = max(allowed, key=lambda v: v.version)
        chosen = best.provider(provider)
        assert chosen is not None
        return best, chosen
    if not catalog.versions:
        raise BoxError(f"the box catalog for {catalog.name} ({catalog.url}) lists no versions")
    if not with_provider:
        others = sorted({p.name for v in catalog.versions for p in v.providers})
        raise BoxError(
            f"box {catalog.name} has no {provider} version in {catalog.url}"
            + (f" (it has: {', '.join(others)})" if others else ""),
            hint=f"vmctl runs {provider} boxes; ask the box's publisher for a {provider} build",
        )
    available = ", ".join(str(v.version) for v in sorted(with_provider, key=lambda v: v.version))
    raise BoxError(
        f"no version of box {catalog.name} satisfies {constraint.text!r} "
        f"(versions with a {provider} provider: {available})",
        hint="change the version constraint (--box-version, or config.vm.box_version)",
    )


def newest_version(catalog: Catalog, provider: str = PROVIDER) -> Version | None:
    """The newest version in CATALOG that has PROVIDER (for `box outdated`)."""
    versions = [v.version for v in catalog.versions if v.provider(provider) is not None]
    return max(versions) if versions else None
