#!/bin/sh
# Runs as an mmdebstrap customize hook: $1 is the root directory, after the packages are
# installed and the overlay (files/) is copied in. The builder sets:
#   VMCTL_AUTHORIZED_KEYS  the insecure public keys (vagrant.pub), one per line
# After this script the builder makes the initramfs (following files/etc/initramfs-tools), then
# the disk: /etc/fstab and GRUB are the builder's.
set -eu
root=$1
in_root() { chroot "$root" "$@"; }

chmod 0440 "$root/etc/sudoers.d/vagrant"
# Executable even when the recipe came through a channel that drops file modes: without its
# hook the initramfs would have no disk driver.
chmod 0755 "$root/etc/initramfs-tools/hooks/vmctl-disks"

# --- the user vagrant (uid 1000) -------------------------------------------------------------
in_root useradd --uid 1000 --user-group --groups sudo,adm,systemd-journal \
    --create-home --shell /bin/bash --comment "vagrant" vagrant
home=$root/home/vagrant
mkdir -p "$home/.ssh"
cp "$VMCTL_AUTHORIZED_KEYS" "$home/.ssh/authorized_keys"
chmod 0700 "$home" "$home/.ssh"
chmod 0600 "$home/.ssh/authorized_keys"
in_root chown -R vagrant:vagrant /home/vagrant

# --- services: what runs at boot --------------------------------------------------------------
in_root systemctl enable systemd-networkd.service systemd-resolved.service ssh.service
# What a virtual machine does not need, and what would make it wait. Under emulation every
# unit and every kernel module costs CPU time that SSH waits for: file systems nothing here
# uses are not mounted (fuse, configfs, hugepages, binfmt_misc, debugfs, tracefs), and modules
# that load on first use anyway (fuse, loop, dm_mod) are not loaded ahead.
in_root systemctl mask \
    systemd-networkd-wait-online.service systemd-network-generator.service \
    apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer \
    systemd-firstboot.service systemd-pstore.service \
    getty@tty1.service systemd-update-utmp-runlevel.service \
    systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
    dev-hugepages.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
    sys-fs-fuse-connections.mount sys-kernel-config.mount \
    modprobe@drm.service modprobe@configfs.service modprobe@dm_mod.service \
    modprobe@fuse.service modprobe@loop.service modprobe@efi_pstore.service
# Generators for what a VM with one ext4 disk does not have (encrypted, verity or integrity
# volumes, GPT auto-discovery, hibernation, SysV scripts, rc.local).
mkdir -p "$root/etc/systemd/system-generators"
for generator in cryptsetup gpt-auto hibernate-resume integritysetup veritysetup rc-local \
    system-update sysv; do
    ln -sf /dev/null "$root/etc/systemd/system-generators/systemd-$generator-generator"
done

# Nothing in /usr changed since these caches were made: ldconfig, the hwdb, system users and the
# journal catalog need no update at boot (ConditionNeedsUpdate); an apt upgrade in the guest
# changes /usr, and they run once on the next boot.
touch "$root/etc/.updated" "$root/var/.updated"

# --- no leftovers from the build, nothing that must be unique -------------------------------
rm -f "$root"/etc/ssh/ssh_host_*
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
rm -rf "$root/var/cache/debconf/"*-old "$root/var/lib/dpkg/"*-old "$root/var/log/"*.log
rm -rf "$root/var/cache/apt/"* "$root/var/lib/apt/lists/"*
