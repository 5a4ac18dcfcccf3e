#!/bin/sh
# mmdebstrap customize hook ($1: the root). A cloud image: no login user, no key, no host
# keys; cloud-init makes them from the seed on first boot.
set -eu
root=$1
in_root() { chroot "$root" "$@"; }
chmod 0755 "$root/etc/initramfs-tools/hooks/vmctl-disks"
in_root systemctl enable systemd-networkd.service systemd-resolved.service ssh.service
# What a test image need not do at boot; e2scrub_reap (e2fsprogs) alone took minutes of CPU on
# the first boot under emulation.
in_root systemctl mask \
    systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
    dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer getty@tty1.service \
    systemd-firstboot.service
rm -f "$root"/etc/ssh/ssh_host_*
: >"$root/etc/machine-id"
ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
# no user of uid 1000 and no vagrant user: the seed's login user is the only one
if in_root getent passwd vagrant >/dev/null; then echo "the cloud image must not have a vagrant user" >&2; exit 1; fi
rm -rf "$root/var/cache/apt/"* "$root/var/lib/apt/lists/"* "$root/var/lib/cloud/"*
