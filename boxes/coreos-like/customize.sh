#!/bin/sh
# Runs as an mmdebstrap customize hook: $1 is the root directory, after the packages are
# installed and the overlay (files/) is copied in. The builder sets:
#   VMCTL_AUTHORIZED_KEYS  the insecure public keys (vagrant.pub), one per line
#   VMCTL_RECIPE_DIR       this folder
set -eu
root=$1
recipe=$VMCTL_RECIPE_DIR
in_root() { chroot "$root" "$@"; }

chmod 0440 "$root/etc/sudoers.d/core" "$root/etc/sudoers.d/docker"

# --- the user core (uid 500, as in CoreOS) -------------------------------------------------
in_root groupadd --system docker
in_root groupadd --gid 500 core
in_root useradd --uid 500 --gid 500 --groups sudo,docker,systemd-journal,adm \
    --create-home --shell /bin/bash --comment "CoreOS-like admin" core
home=$root/home/core
mkdir -p "$home/.ssh"
cp "$VMCTL_AUTHORIZED_KEYS" "$home/.ssh/authorized_keys"
chmod 0700 "$home" "$home/.ssh"
chmod 0600 "$home/.ssh/authorized_keys"
in_root chown -R core:core /home/core

# --- docker: podman as root (see /usr/bin/docker) --------------------------------------------
in_root dpkg-divert --local --rename --divert /usr/bin/docker.podman-docker --add /usr/bin/docker
install -m 0755 "$recipe/docker" "$root/usr/bin/docker"

# --- etcdctl: preconfigured (/etc/etcd/etcdctl.env, written by etcd-tls) --------------------
in_root dpkg-divert --local --rename --divert /usr/bin/etcdctl.etcd-client --add /usr/bin/etcdctl
install -m 0755 "$recipe/etcdctl" "$root/usr/bin/etcdctl"

# --- the image debian:bookworm, from Debian's packages, in podman's store --------------------
# A second, minimal bookworm (minbase: what the Docker image holds, less docs and translations),
# imported into /var/lib/containers/storage (overlay driver) so that it works with no registry.
image=$root/tmp/debian-bookworm.tar
mmdebstrap --mode=root --variant=minbase --quiet \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
    bookworm "$image" - <"$root/etc/apt/sources.list"
# Podman unpacks layers in a private mount namespace and needs / to be a mount point there:
# run it in its own namespace, with the root bound onto itself (gone when podman exits).
unshare --mount --propagation private sh -c '
    mount --rbind "$1" "$1"
    chroot "$1" podman --events-backend=none --cgroup-manager=cgroupfs import \
        --change "CMD [\"bash\"]" --message "debian:bookworm, built by vmctl from Debian packages" \
        /tmp/debian-bookworm.tar docker.io/library/debian:bookworm >/dev/null
' import "$root"
rm -f "$image"
rm -rf "$root/run/containers" "$root/run/libpod"

# --- first boot (Ignition), cloud-config, the two /usr partitions ------------------------------
# The initramfs runs Ignition on the boot that finds this file, then removes it.
touch "$root/boot/ignition.firstboot"
# coreos-vagrant's provisioning moves its user-data here (coreos-vagrant-user-data.path).
mkdir -p "$root/var/lib/coreos-vagrant"
# USR-A holds this /usr, of the box's version; USR-B is empty until `update-usr apply`.
mkdir -p "$root/usr/lib/update-usr/health.d" "$root/etc/update-usr/health.d" "$root/var/lib/update-usr"
echo "$VMCTL_BOX_VERSION" >"$root/usr/lib/update-usr/version"
printf 'ACTIVE=USR-A\nPENDING=\nTRIAL=0\n' >"$root/var/lib/update-usr/boot"
printf 'USR-A=%s\nUSR-B=\n' "$VMCTL_BOX_VERSION" >"$root/var/lib/update-usr/versions"

# --- services: what runs at boot --------------------------------------------------------------
in_root systemctl enable systemd-networkd.service systemd-resolved.service ssh.service \
    update-usr-confirm.service coreos-vagrant-user-data.path coreos-vagrant-user-data.service
# etcd is installed, not started: the machine's provisioning configures its cluster and starts it.
in_root systemctl disable etcd.service
# Podman's API (the Docker API, /run/docker.sock) starts when a client connects to its socket,
# as Docker's does, not at boot, where it costs seconds of CPU under TCG before SSH answers.
in_root systemctl disable podman.service
in_root systemctl enable podman.socket
# What a server VM does not need, and what cannot work with a read-only /usr.
in_root systemctl mask \
    getty.target getty@tty1.service serial-getty@ttyS0.service console-getty.service \
    systemd-networkd-wait-online.service remote-fs.target \
    apt-daily.timer apt-daily-upgrade.timer man-db.timer logrotate.timer dpkg-db-backup.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer \
    systemd-firstboot.service systemd-pstore.service \
    sys-kernel-debug.mount sys-kernel-tracing.mount sys-fs-fuse-connections.mount \
    modprobe@drm.service modprobe@efi_pstore.service modprobe@fuse.service modprobe@loop.service \
    modprobe@dm_mod.service modprobe@configfs.service sys-kernel-config.mount \
    podman-auto-update.timer podman-auto-update.service systemd-network-generator.service
# Generators for what a VM with one ext4 disk and no init scripts does not have (encrypted,
# verity or integrity volumes, GPT auto-discovery, hibernation, SysV scripts, rc.local, gettys).
mkdir -p "$root/etc/systemd/system-generators"
for generator in cryptsetup gpt-auto hibernate-resume integritysetup veritysetup rc-local \
    system-update sysv getty; do
    ln -sf /dev/null "$root/etc/systemd/system-generators/systemd-$generator-generator"
done

# /usr is read-only: nothing there is updated at boot (ldconfig, hwdb, sysusers, catalogs).
in_root systemd-hwdb update
touch "$root/etc/.updated" "$root/var/.updated"

# --- no leftovers from the build, nothing that must be unique -------------------------------
rm -f "$root"/etc/ssh/ssh_host_*
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
rm -rf "$root/var/cache/debconf/"*-old "$root/var/lib/dpkg/"*-old "$root/var/log/"*.log
rm -rf "$root/var/cache/apt/"* "$root/var/lib/apt/lists/"*
