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


@pytest.mark.parametrize("machine_type, bus, target", [("pc", "ide", "hdc"), ("q35", "sata", "sdc")])
def test_seed_is_a_readonly_cdrom_libvirt_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   machine_type: str, bus: str, target: str) -> None:
    """The seed joins the machine's disk list as a read-only CD-ROM on a free device name,
    and the whole domain passes libvirt's schema."""
    import xml.etree.ElementTree as ET

    from libvirt_schema import validate_domain

    from vmctl.machine import disks, hardware
    from vmctl.machine.state import MachineState
    from vmctl.vagrantfile.loader import evaluate_project

    monkeypatch.setenv("VMCTL_HOME", str(tmp_path / "home"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "tools.iso").write_bytes(b"")
    (project / "Vagrantfile").write_text(
        'Vagrant.configure("2") do |config|\n  config.vm.box = "vmctl/debian"\n'
        f'  config.vm.provider :libvirt do |lv|\n    lv.machine_type = "{machine_type}"\n'
        '    lv.storage :file, device: :cdrom, path: "tools.iso"\n  end\nend\n')
    cfg = evaluate_project(project / "Vagrantfile", env={"HOME": "/home/tester"}).machines[0]
    mid = "0123456789ab"
    folder = tmp_path / "home" / "machines" / mid
    st = MachineState(id=mid, domain="vmctl-p-default-012345", uri="qemu:///embed?root=/x",
                      disk=str(folder / "disk.qcow2"), console_log=str(folder / "console.log"), ssh_port=2222,
                      ssh_user="vagrant", uuid=hardware.domain_uuid(mid))
    st.disks = disks.plan(cfg, mid, disks.Box(Path("/boxes/box.img"), "qcow2", 2 * 1024**3),
                          machine_type=machine_type, tpm_dir=None, nvram_template=None)
    seed = disks.seed_disk(folder / disks.SEED_FILE, st.disks, machine_type=machine_type)
    assert (seed.role, seed.bus, seed.target, seed.readonly, seed.owner) == ("cdrom", bus, target, True, "vmctl")
    assert disks.owned_path_ok(Path(seed.path), mid)
    host = hardware.Host(accel="tcg", uri=st.uri, embedded=True)
    spec, _ = hardware.build(cfg, st, [*st.all_disks(), seed], project_root=project, host=host, private_nics=(),
                             forwards=(domain.Forward("127.0.0.1", 2222, 22),))
    xml = domain.render_domain(spec)
    validate_domain(xml)
    cdroms = ET.fromstring(xml).findall("devices/disk[@device='cdrom']")
    sources = {c.find("target").get("dev"): c.find("source").get("file") for c in cdroms}
    assert sources[target] == str(folder / "cidata.iso") and len(sources) == 2
    assert all(c.find("readonly") is not None for c in cdroms)


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
