"""For every test: no test reaches the internet's box registry. A box name that is not
installed would be looked up on vagrantcloud.com; here it is looked up on a closed local
port instead (connection refused at once), unless a test names its own registry."""

from __future__ import annotations

import os

OFFLINE_REGISTRY = "http://127.0.0.1:9"
os.environ.setdefault("VAGRANT_SERVER_URL", OFFLINE_REGISTRY)
