"""cloud-init's NoCloud seed: what a machine's cloud-init reads on its first boot.

    user-data       the Vagrantfile's `config.vm.cloud_init` parts (and, for a plain cloud
                    image, vmctl's own part: the login user and its key) as one MIME
                    multi-part document, as Vagrant writes it
    meta-data       instance-id (the machine's id: the same on every boot, so cloud-init
                    applies the seed once) and local-hostname
    network-config  only for plain cloud images: DHCP on vmctl's first NIC (by its MAC)

They travel on a small ISO 9660 image labelled `cidata`, attached as a CD-ROM, which
cloud-init's NoCloud data source finds by its label. The image is written in Python
(pycdlib), so no host command (genisoimage, xorriso) is needed.

Everything here is pure: text in, bytes out.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from email.charset import Charset
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import yaml

# cloud-init's NoCloud data source looks for a file system with this label.
SEED_LABEL = "cidata"
# A seed larger than this is a mistake (cloud-init keeps user-data in memory, and the
# Vagrantfile's parts are scripts and configuration).
MAX_USER_DATA = 16 * 1024 * 1024
# How vmctl's own part merges into the user's (which come first): lists are appended to
# (the user's `users:` keep theirs and gain vmctl's), a key the user set is kept, and
# nested mappings merge.
MERGE_HOW = [
    {"name": "list", "settings": ["append"]},
    {"name": "dict", "settings": ["no_replace", "recurse_list"]},
]


@dataclass(frozen=True)
class Part:
    """One part of the user-data: its MIME type (text/cloud-config, text/x-shellscript, ...),
    its text, and optionally the file name cloud-init gives it."""

    content_type: str
    text: str
    filename: str | None = None


def user_data(parts: list[Part]) -> bytes:
    """The MIME multi-part user-data holding PARTS in order (cloud-init reads a multi-part
    document whatever the number of parts; Vagrant writes one too)."""
    if not parts:
        raise ValueError("user-data needs at least one part")
    doc = MIMEMultipart("mixed")
    for i, part in enumerate(parts):
        major, _, subtype = part.content_type.partition("/")
        if major != "text" or not subtype:
            raise ValueError(f"{part.content_type!r} is not a text/* content type")
        charset = Charset("utf-8")
        charset.body_encoding = None  # 8bit: the seed stays readable, and cloud-init reads it as is
        msg = MIMEText(part.text, subtype, charset)
        msg.add_header("Content-Disposition", "attachment", filename=part.filename or f"part-{i + 1:03d}")
        doc.attach(msg)
    data = doc.as_bytes()
    if len(data) > MAX_USER_DATA:
        raise ValueError(f"the user-data is {len(data)} bytes, more than {MAX_USER_DATA}")
    return data


def login_part(user: str, public_key: str) -> Part:
    """vmctl's cloud-config for a plain cloud image: USER with passwordless sudo and the
    machine's PUBLIC_KEY, merged after (and into) the user's own cloud-config."""
    public_key = public_key.strip()
    if "\n" in public_key or not public_key:
        raise ValueError("the public key must be one line")
    config = {
        "merge_how": MERGE_HOW,
        "users": [{
            "name": user,
            "gecos": "vmctl",
            "shell": "/bin/bash",
            "sudo": "ALL=(ALL) NOPASSWD:ALL",
            "lock_passwd": True,
            "ssh_authorized_keys": [public_key],
        }],
    }
    return Part("text/cloud-config", "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False), "vmctl-login.cfg")


def meta_data(instance_id: str, hostname: str) -> bytes:
    return yaml.safe_dump({"instance-id": instance_id, "local-hostname": hostname}, sort_keys=False).encode()


def network_config(mac: str) -> bytes:
    """Network configuration (version 2): DHCP on the NIC with MAC, vmctl's first NIC."""
    config = {
        "version": 2,
        "ethernets": {"vmctl0": {"match": {"macaddress": mac}, "dhcp4": True}},
    }
    return yaml.safe_dump(config, sort_keys=False).encode()


def seed_iso(files: dict[str, bytes]) -> bytes:
    """An ISO 9660 image labelled `cidata` holding FILES (name -> bytes) in its root, with
    Rock Ridge and Joliet names (`user-data`, `meta-data`), as NoCloud expects."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=SEED_LABEL)
    used: set[str] = set()
    for name, data in files.items():
        if not name or "/" in name or len(name) > 64 or any(ord(c) < 33 or ord(c) > 126 for c in name):
            raise ValueError(f"{name!r} is not a seed file name")
        short = "".join(c for c in name.upper() if c.isalnum() or c == "_")[:8] or "FILE"
        while short in used:
            short = short[:7] + str(len(used))
        used.add(short)
        iso.add_fp(io.BytesIO(data), len(data), f"/{short}.;1", rr_name=name, joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def seed(parts: list[Part], *, instance_id: str, hostname: str, mac: str | None = None) -> bytes:
    """The whole seed ISO: user-data of PARTS, meta-data, and with MAC a network-config."""
    files = {"user-data": user_data(parts), "meta-data": meta_data(instance_id, hostname)}
    if mac is not None:
        files["network-config"] = network_config(mac)
    return seed_iso(files)
