# The stage loader's reads of the device: the firmware partition (by GPT name), the vendor key and
# board name the initramfs carries, small files, the kernel's uptime.

import os
import subprocess

from firmware.boot.signature import load_public_key

# Where the image puts the vendor's Ed25519 public key (inside the initramfs, so it is covered by
# the PCR 9/11 measurement of the initrd; never on the firmware partition an attacker can write).
VENDOR_KEY_PATHS = ("/opt/phone/vendor-pubkey.pem", "/etc/phone/vendor-pubkey.pem")
# The board this initramfs was built for (host_tools/image/build.py writes it; covered by PCR 9/11
# like the vendor key). A bundle signed for another board is refused. Absent: not checked.
BOARD_PATH = "/opt/phone/board"
# The board's component register (board.json `component_pcr`), written by the image builder into
# the initramfs next to the board name: measured with it (PCR 4, 9, 11), unlike the bundle.
COMPONENT_PCR_PATH = "/opt/phone/component-pcr"
# The board's removable-media path of the UKI on the ESP (board.json platform.esp_boot_path), written
# by the image builder next to the board name: UKI bank a (firmware/boot/uki_banks.py).
ESP_BOOT_PATH = "/opt/phone/esp-boot-path"
FW_PARTITION = "phone-fw"  # GPT partition name of the firmware partition (docs/image-format.md)
# Firmware banks (docs/flashing.md): bank a is the factory partition, bank b the second one; /init
# exports each one's device (PHONE_FW_DEV, PHONE_FW_B_DEV). The slot record is on the data one.
BANK_PARTITIONS = {"a": (FW_PARTITION, "PHONE_FW_DEV"), "b": ("phone-fw-b", "PHONE_FW_B_DEV")}
DATA_PARTITION = ("phone-data", "PHONE_DATA_DEV")


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def write_file(path, data, mode=0o444):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise OSError("%s failed (%d): %s" % (" ".join(cmd), p.returncode,
                                               p.stdout.decode(errors="replace").strip()))


def find_partition(name, sys_block="/sys/class/block"):
    """/dev/<node> of the partition whose GPT partition name is `name` (the kernel exports it
    as PARTNAME in the block device's uevent), or None."""
    try:
        nodes = sorted(os.listdir(sys_block))
    except OSError:
        return None
    for node in nodes:
        try:
            lines = read_file("%s/%s/uevent" % (sys_block, node)).decode().splitlines()
        except OSError:
            continue
        if "PARTNAME=" + name in lines:
            for line in lines:
                if line.startswith("DEVNAME="):
                    return "/dev/" + line[len("DEVNAME="):]
    return None


def partition_device(name, env):
    """/dev node of the partition `name`: /init exports it as `env`; looked up ourselves when
    started another way. None when absent."""
    dev = os.environ.get(env, "")
    if not dev or dev.endswith("/missing"):
        dev = find_partition(name)
    return dev or None


def bank_devices():
    """{bank: /dev node} of the firmware banks present."""
    out = {}
    for bank, (name, env) in BANK_PARTITIONS.items():
        dev = partition_device(name, env)
        if dev:
            out[bank] = dev
    return out


def read_partition(bank="a"):
    name, env = BANK_PARTITIONS[bank]
    dev = partition_device(name, env)
    if not dev:
        raise OSError("no firmware partition (GPT name %s) found" % name)
    return read_file(dev)


def vendor_key():
    for path in VENDOR_KEY_PATHS:
        if os.path.exists(path):
            return path, load_public_key(read_file(path))
    return None, None


def board_name():
    try:
        name = read_file(BOARD_PATH).decode("utf-8").strip()
    except (OSError, UnicodeError):
        return None
    return name or None


def esp_boot_path():
    """The board's removable-media UKI path (e.g. EFI/BOOT/BOOTX64.EFI), or None."""
    try:
        path = read_file(ESP_BOOT_PATH).decode("ascii").strip()
    except (OSError, UnicodeError):
        return None
    return path or None


def component_pcr():
    """(PCR, None) the board measures its components into, or (the default register, why the
    setting is unusable): a missing file is an image built before the setting existed (its
    loader measured into the default); an unreadable or colliding one refuses every bundle."""
    from firmware.pcr_registry import DEFAULT_COMPONENT_PCR, PcrCollisionError, parse_component_pcr
    try:
        raw = read_file(COMPONENT_PCR_PATH)
    except OSError as e:
        if not os.path.exists(COMPONENT_PCR_PATH):
            return DEFAULT_COMPONENT_PCR, None
        return DEFAULT_COMPONENT_PCR, "%s unreadable: %s" % (COMPONENT_PCR_PATH, e)
    try:
        text = raw.decode("ascii")
    except UnicodeError:
        return DEFAULT_COMPONENT_PCR, "%s: not a PCR index (not ASCII)" % COMPONENT_PCR_PATH
    try:
        return parse_component_pcr(text), None
    except PcrCollisionError as e:
        return DEFAULT_COMPONENT_PCR, "%s: %s" % (COMPONENT_PCR_PATH, e)


def uptime():
    try:
        return float(read_file("/proc/uptime").split()[0])
    except (OSError, ValueError, IndexError):
        return None
