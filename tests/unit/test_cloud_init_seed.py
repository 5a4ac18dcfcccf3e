"""cloud-init's NoCloud seed: the MIME multi-part user-data, vmctl's login part, the ISO
(read back with pycdlib and blkid), the CD-ROM in the domain XML; plain cloud images as boxes."""

from __future__ import annotations

import email
import io
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pycdlib
import pytest
import yaml

from vmctl import cloudinit, domain
from vmctl.boxes import add_box, find_box
from vmctl.errors import BoxError


def parts() -> list[cloudinit.Part]:
    return [
        cloudinit.Part("text/cloud-config", "#cloud-config\nruncmd:\n  - [touch, /tmp/from-cloud-init]\n"),
        cloudinit.Part("text/x-shellscript", "#!/bin/sh\necho héllo > /tmp/script\n", "hello.sh"),
    ]


def test_user_data_is_a_mime_multipart_of_the_parts() -> None:
    data = cloudinit.user_data(parts())
    msg = email.message_from_bytes(data)
    assert msg.get_content_type() == "multipart/mixed"
    got = [(p.get_content_type(), p.get_filename(), p.get_payload(decode=True).decode()) for p in msg.get_payload()]
    assert got == [
        ("text/cloud-config", "part-001", "#cloud-config\nruncmd:\n  - [touch, /tmp/from-cloud-init]\n"),
        ("text/x-shellscript", "hello.sh", "#!/bin/sh\necho héllo > /tmp/script\n"),
    ]
    assert b"Content-Transfer-Encoding: base64" not in data  # readable as it is


def test_user_data_refuses_what_cloud_init_cannot_read() -> None:
    with pytest.raises(ValueError):
        cloudinit.user_data([])
    with pytest.raises(ValueError):
        cloudinit.user_data([cloudinit.Part("application/json", "{}")])
    with pytest.raises(ValueError, match="more than"):
        cloudinit.user_data([cloudinit.Part("text/x-shellscript", "x" * (cloudinit.MAX_USER_DATA + 1))])


def test_login_part_merges_into_the_users_config() -> None:
    part = cloudinit.login_part("vagrant", "ssh-ed25519 AAAAkey vmctl-abc\n")
    assert part.content_type == "text/cloud-config" and part.text.startswith("#cloud-config\n")
    config = yaml.safe_load(part.text)
    assert config["merge_how"] == [{"name": "list", "settings": ["append"]},
                                   {"name": "dict", "settings": ["no_replace", "recurse_list"]}]
    (user,) = config["users"]
    assert user == {"name": "vagrant", "gecos": "vmctl", "shell": "/bin/bash", "sudo": "ALL=(ALL) NOPASSWD:ALL",
                    "lock_passwd": True, "ssh_authorized_keys": ["ssh-ed25519 AAAAkey vmctl-abc"]}
    with pytest.raises(ValueError):
        cloudinit.login_part("vagrant", "ssh-ed25519 AAAA\nssh-rsa BBBB")


def test_meta_data_and_network_config() -> None:
    assert yaml.safe_load(cloudinit.meta_data("vmctl-0123456789ab", "web")) == {
        "instance-id": "vmctl-0123456789ab", "local-hostname": "web"}
    assert yaml.safe_load(cloudinit.network_config("52:54:00:12:34:56")) == {
        "version": 2, "ethernets": {"vmctl0": {"match": {"macaddress": "52:54:00:12:34:56"}, "dhcp4": True}}}


def read_iso(data: bytes) -> tuple[str, dict[str, bytes]]:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    label = iso.pvd.volume_identifier.decode().strip()
    files = {}
    for record in iso.list_children(rr_path="/"):
        if record.is_file():
            name = record.rock_ridge.name().decode()
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            files[name] = out.getvalue()
    iso.close()
    return label, files


def test_seed_iso(tmp_path: Path) -> None:
    data = cloudinit.seed(parts(), instance_id="vmctl-abc", hostname="web", mac="52:54:00:12:34:56")
    label, files = read_iso(data)
    assert label == "cidata"
    assert sorted(files) == ["meta-data", "network-config", "user-data"]
    assert files["user-data"] == cloudinit.user_data(parts()) or files["user-data"].startswith(b"Content-Type: multipart/mixed")
    assert yaml.safe_load(files["meta-data"])["instance-id"] == "vmctl-abc"
    # what the guest's blkid (cloud-init's ds-identify) sees
    if shutil.which("blkid") or Path("/usr/sbin/blkid").exists():
        path = tmp_path / "seed.iso"
        path.write_bytes(data)
        blkid = shutil.which("blkid") or "/usr/sbin/blkid"
        out = subprocess.run([blkid, "-o", "export", str(path)], capture_output=True, text=True, check=True).stdout
        assert "LABEL=cidata" in out and "TYPE=iso9660" in out
    # without a MAC (a box of its own, with cloud_init data): no network-config
    assert sorted(read_iso(cloudinit.seed(parts(), instance_id="i", hostname="h"))[1]) == ["meta-data", "user-data"]


def test_seed_file_names_are_checked() -> None:
    with pytest.raises(ValueError):
        cloudinit.seed_iso({"../x": b""})


def test_cdrom_in_the_domain_xml_is_valid(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    spec = domain.DomainSpec(
        name="vmctl-p-web-abc123", uuid="6f1c1f0e-8d5e-4b71-9a55-000000000001", memory_mib=512, cpus=1, accel="tcg",
        disk=tmp_path / "disk.qcow2", console_log=tmp_path / "console.log", mac="52:54:00:aa:bb:cc",
        forwards=(domain.Forward("127.0.0.1", 2200, 22),), cdrom=tmp_path / "cidata.iso",
    )
    xml = domain.render_domain(spec)
    root = ET.fromstring(xml)
    cdrom = root.find("devices/disk[@device='cdrom']")
    assert cdrom is not None and cdrom.find("source").get("file") == str(tmp_path / "cidata.iso")
    assert (cdrom.find("target").get("bus"), cdrom.find("readonly") is not None) == ("ide", True)
    validator = shutil.which("virt-xml-validate")
    if validator is None:
        pytest.fail("virt-xml-validate (libvirt-clients) is needed to check the XML against libvirt's schema")
    (tmp_path / "domain.xml").write_text(xml)
    proc = subprocess.run([validator, str(tmp_path / "domain.xml"), "domain"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "device=\"cdrom\"" not in domain.render_domain(domain.DomainSpec(**{**spec.__dict__, "cdrom": None}))


# --- plain cloud images as boxes -------------------------------------------------------------

@pytest.fixture
def qcow2(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "cloud.qcow2", size: str = "3G", backing: Path | None = None) -> Path:
        path = tmp_path / name
        argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
        if backing is not None:
            argv += ["-F", "qcow2", "-b", str(backing)]
        subprocess.run([*argv, str(path), size], check=True)
        return path

    return make


def test_a_plain_qcow2_becomes_a_box(box_home: Path, qcow2: Callable[..., Path]) -> None:
    image = qcow2()
    box = add_box(str(image), name="debian/cloud")
    assert (box.name, box.version) == ("debian/cloud", "0")
    assert box.cloud_image and box.vagrantfile is None
    assert box.metadata == {"provider": "libvirt", "format": "qcow2", "virtual_size": 3}
    assert box.image.read_bytes() == image.read_bytes()
    assert sorted(box.record["files"]) == ["box.img", "metadata.json"]
    assert find_box("debian/cloud") == box


def test_a_plain_image_with_a_backing_file_is_refused(box_home: Path, qcow2: Callable[..., Path]) -> None:
    base = qcow2("base.qcow2")
    evil = qcow2("evil.qcow2", backing=base)
    with pytest.raises(BoxError, match="names a backing file"):
        add_box(str(evil), name="evil/cloud")
    assert not (box_home / "boxes" / "evil-VAGRANTSLASH-cloud").exists()


def test_a_plain_image_over_http(box_home: Path, box_server, qcow2: Callable[..., Path]) -> None:
    image = qcow2()
    url = box_server.put("/images/debian-12-genericcloud-amd64.qcow2", image.read_bytes())
    box = add_box(url, name="debian/cloud")
    assert box.cloud_image and box.image.read_bytes() == image.read_bytes()
