#!/bin/sh
# /init of the qemu-x86_64 initramfs (busybox sh).  Brings up the kernel interfaces the stage
# loader needs, loads the virtio modules, finds the phone partitions by GPT partition name and
# hands over to `python3 -m firmware.boot`.  Without a stage loader in the image it drops to a
# shell on the console.
#
# Development check (host_tools.image.bootcheck): when QEMU is started with
# `-fw_cfg name=opt/org.trustedphone/pcrdump,string=1`, /init first prints the TPM's sha256 PCRs
# and the firmware event log (base64) between marker lines.  fw_cfg is outside everything that
# is measured into the policy PCRs, so the same image is checked that users boot.
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mkdir -p /proc /sys /dev /run /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t securityfs securityfs /sys/kernel/security
for m in $(cat /lib/modules/load-order); do
  insmod "/lib/modules/$m" || echo "init: insmod $m failed"
done
# The UEFI variables (Boot####, BootOrder, BootNext: the UKI banks, firmware/boot/uki_banks.py),
# read-write for root; files are 0644, the phone (uid 1000) can read but not change them.
if [ -d /sys/firmware/efi/efivars ] && ! grep -q " /sys/firmware/efi/efivars " /proc/mounts; then
  mount -t efivarfs -o nosuid,nodev,noexec efivarfs /sys/firmware/efi/efivars \
    || echo "init: efivarfs mount failed"
fi

# Partitions are found by GPT partition name (PARTNAME in the block device's uevent).
find_part() {
  for u in /sys/class/block/*/uevent; do
    if grep -qx "PARTNAME=$1" "$u"; then
      sed -n 's/^DEVNAME=//p' "$u"
      return 0
    fi
  done
  return 1
}
i=0
while ! PHONE_SYS_DEV=$(find_part phone-sys) && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done

# The system partition (python3, its libraries, cryptography): a squashfs that dm-verity checks
# block by block against the root hash on the kernel command line, which PCRs 9 and 11 cover
# (host_tools/image/sysimage.py). Any failure stops the boot: no unverified code runs.
refuse() {
  echo "init: REFUSED: system partition: $1"
  while true; do poweroff -f; sleep 1; done
}
sys_arg=$(sed -n 's/.*phone\.sys=\([0-9a-f]*:[0-9a-f]*:[0-9]*\).*/\1/p' /proc/cmdline)
[ -n "$sys_arg" ] || refuse "no phone.sys= on the kernel command line"
[ -n "$PHONE_SYS_DEV" ] || refuse "no partition named phone-sys"
sys_root=${sys_arg%%:*}
sys_rest=${sys_arg#*:}
sys_salt=${sys_rest%%:*}
sys_blocks=${sys_rest#*:}
dm=$(dm-verity-setup phone-sys "/dev/$PHONE_SYS_DEV" "$sys_blocks" "$sys_root" "$sys_salt") \
  || refuse "dm-verity set-up failed"
mkdir -p /sysroot
mount -t squashfs -o ro "/dev/$dm" /sysroot || refuse "cannot mount /dev/$dm (dm-verity)"
export PATH=/sysroot/usr/bin:$PATH

# Network (QEMU -netdev user): its fixed addresses, no DHCP round trip; the host's loopback is
# 10.0.2.2 (docs/calling.md). Without a NIC (-nic none) there is no eth0 and this is skipped.
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 \
    && echo "init: eth0 10.0.2.15/24 via 10.0.2.2"
fi

i=0
while ! PHONE_FW_DEV=$(find_part phone-fw) && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
PHONE_DATA_DEV=$(find_part phone-data)
PHONE_FW_B_DEV=$(find_part phone-fw-b)
PHONE_ESP_DEV=$(find_part esp)
export PHONE_FW_DEV="/dev/${PHONE_FW_DEV:-missing}" PHONE_DATA_DEV="/dev/${PHONE_DATA_DEV:-missing}"
export PHONE_FW_B_DEV="/dev/${PHONE_FW_B_DEV:-missing}"
# the EFI System Partition (UKI banks a and b; the loader mounts it only to change them:
# firmware/boot/esp.py)
export PHONE_ESP_DEV="/dev/${PHONE_ESP_DEV:-missing}"
echo "init: firmware partition $PHONE_FW_DEV, data partition $PHONE_DATA_DEV"
echo "init: firmware bank b $PHONE_FW_B_DEV"

if [ "$(cat /sys/firmware/qemu_fw_cfg/by_name/opt/org.trustedphone/pcrdump/raw 2>/dev/null)" = 1 ]
then
  echo "init: development PCR dump (fw_cfg opt/org.trustedphone/pcrdump)"
  echo "-----BEGIN PCRS-----"
  for f in /sys/class/tpm/tpm0/pcr-sha256/*; do
    echo "sha256 ${f##*/} $(cat "$f")"
  done
  echo "-----END PCRS-----"
  echo "-----BEGIN EVENTLOG-----"
  base64 /sys/kernel/security/tpm0/binary_bios_measurements
  echo "-----END EVENTLOG-----"
fi

export PYTHONPATH=/opt/phone PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
if [ -e /opt/phone/firmware/boot/__main__.py ]; then
  echo "init: starting stage loader (python3 -m firmware.boot)"
  exec python3 -m firmware.boot
fi
echo "init: firmware.boot is not in this image: shell on the console"
exec setsid cttyhack sh
