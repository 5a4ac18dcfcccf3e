"""For every test: no test reaches the internet's box registry. A box name that is not
installed would be looked up on vagrantcloud.com; here it is looked up on a closed local
port instead (connection refused at once), unless a test names its own registry."""

from __future__ import annotations

import functools
import os

OFFLINE_REGISTRY = "http://127.0.0.1:9"
os.environ.setdefault("VAGRANT_SERVER_URL", OFFLINE_REGISTRY)


def pytest_xdist_make_scheduler(config, log):  # noqa: ANN001, ANN201 (xdist's hook)
    """The lanes of `scripts/test` (pytest-xdist): each test module runs whole in one lane, as
    its tests share a booted machine, and the modules marked `pytest.mark.host_wide` (host
    bridges, nftables, qemu:///system) share one lane, so that two of them never meet on
    the host. xdist's own `--dist loadgroup` would do this, but not with pytest 9.2's node ids."""
    from xdist.scheduler import LoadScopeScheduling

    @functools.cache
    def lane(module: str) -> str:
        path = config.rootpath / module
        return "host-wide" if "pytest.mark.host_wide" in path.read_text(errors="replace") else module

    class ModuleLanes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return lane(nodeid.split("::", 1)[0])

    config.option.loadscopereorder = False  # keep the collection's order: host-wide first
    return ModuleLanes(config, log)
