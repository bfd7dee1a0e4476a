"""Predict the PCR values a boot of the built image produces, from the image alone.

Each function returns the ordered list of digests that the named party extends into one PCR;
``replay`` folds them the way the TPM does (TPM 2.0 Part 1 §17.1: new = H(old || digest), PCRs
0-15 start at all zeroes).  Why each event is there:

* PCR 4 (OVMF, TCG PC Client PFP §10.4.4 / §3.3.4.5): the EV_EFI_ACTION "Calling EFI Application
  from Boot Option" when BDS starts the boot option, the EV_SEPARATOR OVMF writes to PCRs 0-7 at
  ReadyToBoot, then EV_EFI_BOOT_SERVICES_APPLICATION with the Authenticode digest of every image
  started through LoadImage: the UKI, and then (Secure Boot off only) the kernel that
  systemd-stub 252 loads from the UKI's .linux section with LoadImage.  With Secure Boot on the
  stub hands over to the kernel without LoadImage (the Debian kernel is not signed by our db):
  no kernel event (captured from OVMF 2022.11 + systemd-stub 252, host_tools/image/secureboot.py).
* PCR 7 (OVMF, PFP §3.3.4.8): EV_EFI_VARIABLE_DRIVER_CONFIG for SecureBoot, PK, KEK, db, dbx
  (each the digest of a UEFI_VARIABLE_DATA), then the separator.  With Secure Boot disabled
  nothing else is added (no EV_EFI_VARIABLE_AUTHORITY).
* PCR 9 (Linux EFI stub, 6.1): the load options it was started with (systemd-stub passes the
  .cmdline section as UTF-16LE with its terminating NUL), then the initrd it loaded via the
  LINUX_EFI_INITRD_MEDIA LoadFile2 protocol (systemd-stub serves the .initrd section).
* PCR 11 (systemd-stub 252, ``src/boot/efi/stub.c``): for each UKI section in the fixed order
  .linux, .osrel, .cmdline, .initrd: the section name with its NUL, then the section contents
  (VirtualSize bytes).  ``systemd-measure calculate --phase=`` gives the same value.
* PCR 5 (OVMF, PFP §3.3.4.6 and §10.4.4): the separator, the EV_EFI_GPT_EVENT of the boot
  disk (UEFI_GPT_DATA: the GPT header, then the number of used entries and those entries),
  then the two EV_EFI_ACTION events around the kernel's ExitBootServices call.
* PCR 12 (systemd-stub 252): the kernel command line when it comes from the boot entry's
  LoadOptions instead of the UKI's .cmdline (only possible with Secure Boot off), and credentials
  or system extensions picked up from the ESP. The image has none of these, so nothing is
  extended and PCR 12 keeps its reset value, zero; in the sealing policy it makes any override
  refuse the credentials (issue 9).
* PCR 14, the board's component register (board.json ``component_pcr``, checked by
  ``firmware.pcr_registry``; our stage loader, ``firmware.boot``, event format
  ``firmware.eventlog.writer``): first
  the EV_EVENT_TAG "bundle" event whose digest is the SHA-256 of its own event data (board, bundle
  version, anti-rollback counter: docs/eventlog.md), then one EV_EVENT_TAG per bundle component in
  manifest order whose digest is the SHA-256 of the component's bytes, then EV_SEPARATOR.  After
  the separator nothing more is extended.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import dataclass

from firmware.pcr_registry import DEFAULT_COMPONENT_PCR
from host_tools.image import pe

SEPARATOR_DATA = b"\0\0\0\0"  # PFP §10.4.4: EV_SEPARATOR event data is UINT32 0 on success
CALLING_EFI_APP = b"Calling EFI Application from Boot Option"
# UEFI 2.9 §3.3 EFI_GLOBAL_VARIABLE and §32.6.1 EFI_IMAGE_SECURITY_DATABASE_GUID
EFI_GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
EFI_IMAGE_SECURITY_DATABASE = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
# systemd-stub 252: UKI sections it measures, in the order it measures them.
UKI_MEASURED_SECTIONS = (".linux", ".osrel", ".cmdline", ".initrd")
PHONE_PCR = DEFAULT_COMPONENT_PCR  # the component register when the caller names none


@dataclass(frozen=True)
class Event:
    """One predicted extend: which PCR, a TCG event type name, the digest, a description."""

    pcr: int
    event_type: str
    digest: bytes
    description: str

    def to_json(self) -> dict[str, object]:
        return {"pcr": self.pcr, "type": self.event_type, "digest": self.digest.hex(),
                "description": self.description}


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def replay(digests: list[bytes], algorithm: str = "sha256") -> bytes:
    """Fold extends into a PCR that starts at zero (TPM 2.0 Part 1 §17.1)."""
    size = hashlib.new(algorithm).digest_size
    value = b"\0" * size
    for d in digests:
        if len(d) != size:
            raise ValueError(f"digest of {len(d)} bytes extended into a {algorithm} PCR")
        value = hashlib.new(algorithm, value + d).digest()
    return value


def uefi_variable_data(guid: uuid.UUID, name: str, data: bytes) -> bytes:
    """UEFI_VARIABLE_DATA (PFP §10.2.6): GUID, UINT64 name length in chars, UINT64 data
    length, the UTF-16LE name without NUL, the data."""
    return (guid.bytes_le + struct.pack("<QQ", len(name), len(data))
            + name.encode("utf-16-le") + data)


def pcr4_events(uki: bytes, secure_boot: bool = False) -> list[Event]:
    img = pe.parse(uki)
    kernel = img.section_data(".linux")
    events = [
        Event(4, "EV_EFI_ACTION", sha256(CALLING_EFI_APP), CALLING_EFI_APP.decode()),
        Event(4, "EV_SEPARATOR", sha256(SEPARATOR_DATA), "separator"),
        Event(4, "EV_EFI_BOOT_SERVICES_APPLICATION", pe.authenticode_digest(uki),
              "UKI \\EFI\\BOOT\\BOOTX64.EFI (Authenticode)"),
    ]
    if not secure_boot:
        events.append(Event(4, "EV_EFI_BOOT_SERVICES_APPLICATION", pe.authenticode_digest(kernel),
                            "kernel from UKI .linux (Authenticode)"))
    return events


# OVMF_VARS_4M.fd as shipped (no keys enrolled): SecureBoot holds one byte 0, the key
# databases do not exist and are measured with empty data.
OVMF_SECURE_BOOT_DISABLED: tuple[tuple[uuid.UUID, str, bytes], ...] = (
    (EFI_GLOBAL_VARIABLE, "SecureBoot", b"\x00"),
    (EFI_GLOBAL_VARIABLE, "PK", b""),
    (EFI_GLOBAL_VARIABLE, "KEK", b""),
    (EFI_IMAGE_SECURITY_DATABASE, "db", b""),
    (EFI_IMAGE_SECURITY_DATABASE, "dbx", b""),
)


def pcr7_events(variables: tuple[tuple[uuid.UUID, str, bytes], ...] = OVMF_SECURE_BOOT_DISABLED
                ) -> list[Event]:
    events = [Event(7, "EV_EFI_VARIABLE_DRIVER_CONFIG", sha256(uefi_variable_data(g, n, d)), n)
              for g, n, d in variables]
    events.append(Event(7, "EV_SEPARATOR", sha256(SEPARATOR_DATA), "separator"))
    return events


def load_options_utf16(cmdline: str) -> bytes:
    """The load options systemd-stub hands the kernel: UTF-16LE with the terminating NUL."""
    return (cmdline + "\0").encode("utf-16-le")


def pcr9_events(cmdline: str, initrd: bytes) -> list[Event]:
    return [
        Event(9, "EV_EVENT_TAG", sha256(load_options_utf16(cmdline)), "LOADED_IMAGE::LoadOptions"),
        Event(9, "EV_EVENT_TAG", sha256(initrd), "Linux initrd"),
    ]


def pcr11_events(uki: bytes) -> list[Event]:
    img = pe.parse(uki)
    events = []
    for name in UKI_MEASURED_SECTIONS:
        try:
            content = img.section_data(name)
        except KeyError:
            continue  # systemd-stub skips absent sections
        events.append(Event(11, "EV_IPL", sha256(name.encode() + b"\0"), f"section name {name}"))
        events.append(Event(11, "EV_IPL", sha256(content), f"section {name}"))
    return events


EXIT_BOOT_SERVICES = (b"Exit Boot Services Invocation",
                      b"Exit Boot Services Returned with Success")
_GPT_HEADER_LBA = 1


def uefi_gpt_data(disk: bytes, sector: int = 512) -> bytes:
    """UEFI_GPT_DATA (PFP §10.2.7) for a disk: the primary GPT header (HeaderSize bytes), UINT64
    NumberOfPartitions, then the used entries (non-zero type GUID) in table order."""
    hdr_off = _GPT_HEADER_LBA * sector
    if disk[hdr_off:hdr_off + 8] != b"EFI PART":
        raise ValueError(f"no GPT header signature at offset {hdr_off}")
    (header_size,) = struct.unpack_from("<I", disk, hdr_off + 12)
    entries_lba, count, entry_size = struct.unpack_from("<QII", disk, hdr_off + 72)
    if not 92 <= header_size <= sector or entry_size < 128 or count > 1024:
        raise ValueError(f"GPT header at {hdr_off}: header size {header_size}, {count} entries "
                         f"of {entry_size} bytes")
    used = []
    for i in range(count):
        off = entries_lba * sector + i * entry_size
        entry = disk[off:off + entry_size]
        if len(entry) != entry_size:
            raise ValueError(f"GPT entry {i} at offset {off} is past the end of the disk")
        if entry[:16] != b"\0" * 16:
            used.append(entry)
    return disk[hdr_off:hdr_off + header_size] + struct.pack("<Q", len(used)) + b"".join(used)


def pcr5_events(disk_head: bytes) -> list[Event]:
    """*disk_head*: at least the first 34 sectors of the disk (MBR, GPT header, entries)."""
    return [
        Event(5, "EV_SEPARATOR", sha256(SEPARATOR_DATA), "separator"),
        Event(5, "EV_EFI_GPT_EVENT", sha256(uefi_gpt_data(disk_head)), "boot disk GPT"),
    ] + [Event(5, "EV_EFI_ACTION", sha256(a), a.decode()) for a in EXIT_BOOT_SERVICES]


# docs/eventlog.md "The bundle event" (firmware/eventlog/component.py encode_bundle); written
# again here so the prediction does not run device code, and a unit test compares the two.
PHONE_BUNDLE_TAG = 0x4E554250
BUNDLE_MAGIC = b"phone-bundle\0\0\0\0"
BUNDLE_EVENT_NAME = "bundle"


def bundle_event_data(board: str, bundle_version: str, counter: int) -> bytes:
    """The bundle event's TCG_PCClientTaggedEvent (its digest is the hash of these bytes)."""
    body = BUNDLE_MAGIC
    for what, text in (("board", board), ("bundle version", bundle_version)):
        raw = text.encode()
        if not 1 <= len(raw) <= 255:
            raise ValueError(f"{what} must be 1..255 UTF-8 bytes")
        body += struct.pack("<H", len(raw)) + raw
    if not 0 <= counter <= 0xFFFF_FFFF_FFFF_FFFF:
        raise ValueError("anti-rollback counter must fit in a u64")
    body += struct.pack("<Q", counter)
    return struct.pack("<II", PHONE_BUNDLE_TAG, len(body)) + body


def bundle_label(bundle_version: str, counter: int, board: str) -> str:
    """The 'version' a verifier shows for the bundle event (component.bundle_label)."""
    return f"{bundle_version} (anti-rollback counter {counter}, board {board})"


def pcr14_events(components: list[tuple[str, bytes]],
                 bundle: tuple[str, str, int] | None = None,
                 pcr: int = PHONE_PCR) -> list[Event]:
    """*components*: (name, sha256 digest) in manifest order; *bundle*: (board, bundle version,
    anti-rollback counter) of the manifest, measured first (None: a pre-bundle-event loader);
    *pcr*: the board's component register (board.json ``component_pcr``; 14 on qemu-x86_64)."""
    events = []
    if bundle is not None:
        board, version, counter = bundle
        events.append(Event(pcr, "EV_EVENT_TAG",
                            sha256(bundle_event_data(board, version, counter)),
                            BUNDLE_EVENT_NAME))
    events += [Event(pcr, "EV_EVENT_TAG", digest, name) for name, digest in components]
    events.append(Event(pcr, "EV_SEPARATOR", sha256(SEPARATOR_DATA), "separator"))
    return events


# PCRs the image's boot never extends, predicted at their reset value (PCRs 0-15 start at zero,
# TPM 2.0 Part 1 §17.1; PC Client PTP).  A measured override moves them.
UNEXTENDED_PCRS = (12,)


def pcr_values(events: list[Event]) -> dict[int, bytes]:
    by_pcr: dict[int, list[bytes]] = {p: [] for p in UNEXTENDED_PCRS}
    for e in events:
        by_pcr.setdefault(e.pcr, []).append(e.digest)
    return {pcr: replay(d) for pcr, d in sorted(by_pcr.items())}
