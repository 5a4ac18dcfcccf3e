#!/bin/sh
# Runs as an mmdebstrap customize hook: $1 is the root directory, after the packages are
# installed and the overlay (files/) is copied in. The builder sets:
#   VMCTL_AUTHORIZED_KEYS  the insecure public keys (vagrant.pub), one per line
set -eu
root=$1

# busybox provides init, power-off, DHCP, ip and a few tools Debian's essential set lacks;
# link only the applets no Debian package provides here.
for path in sbin/init sbin/halt sbin/poweroff sbin/reboot sbin/acpid sbin/udhcpc bin/ip \
    sbin/ifconfig sbin/route sbin/findfs bin/ping bin/ps bin/netstat usr/bin/free usr/bin/top \
    usr/bin/vi usr/bin/less usr/bin/wget usr/bin/nc usr/bin/nslookup usr/bin/killall \
    usr/bin/usleep usr/bin/traceroute; do
    if [ ! -e "$root/$path" ] && [ ! -L "$root/$path" ]; then
        ln -s /bin/busybox "$root/$path"
    fi
done

chmod 0440 "$root/etc/sudoers.d/vagrant"
# Executable even when the recipe came through a channel that drops file modes.
chmod 0755 "$root/etc/init.d/rcS" "$root/etc/init.d/rcK" "$root/etc/udhcpc/default.script" \
    "$root/etc/acpi/PWRF/00000080"

# The vagrant user (uid 1000) with no password: it logs in with a key only.
if ! grep -q '^vagrant:' "$root/etc/passwd"; then
    echo 'vagrant:x:1000:1000:vagrant,,,:/home/vagrant:/bin/bash' >>"$root/etc/passwd"
    echo 'vagrant:*:19000:0:99999:7:::' >>"$root/etc/shadow"
    echo 'vagrant:x:1000:' >>"$root/etc/group"
    echo 'vagrant:!::' >>"$root/etc/gshadow"
fi
home=$root/home/vagrant
mkdir -p "$home/.ssh"
cp -a "$root/etc/skel/." "$home/"
cp "$VMCTL_AUTHORIZED_KEYS" "$home/.ssh/authorized_keys"
chmod 0700 "$home" "$home/.ssh"
chmod 0600 "$home/.ssh/authorized_keys"
chown -R 1000:1000 "$home"

# Host keys are made at first boot (see /etc/init.d/rcS), never shipped.
rm -rf "$root/etc/dropbear"
mkdir -p "$root/etc/dropbear"

# No leftovers from the build host.
rm -f "$root/etc/resolv.conf" "$root/etc/machine-id"
rm -rf "$root/var/cache/debconf/"*-old "$root/var/lib/dpkg/"*-old "$root/var/log/"*
rm -rf "$root/var/cache/apt/"* "$root/var/lib/apt/lists/"*
: >"$root/etc/resolv.conf"
