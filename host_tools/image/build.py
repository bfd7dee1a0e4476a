"""Build everything for one board: bundle, initramfs, UKI, disk image, reference.json.

Inputs are the repository (firmware code, board description), the Debian packages in
``build/cache`` (fetched on first use), the systemd stub, and the keys in ``build/keys``
(created on first use and kept).  Nothing else is read: no clocks, no random identifiers, so
two builds from the same inputs are byte-identical.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from firmware import pcr_registry
from host_tools import board as boards
from host_tools import kernel_fetch
from host_tools.image import (bundle, devca, disk, initramfs, modules, pe, predict, references,
                              secureboot, sysimage, uki, uki_package, userland)

REPO = Path(__file__).resolve().parents[2]
REFERENCE_SCHEMA = 1
DISK_NAME = "disk.img"
# qemu-x86_64's; each board's come from board.json platform.esp_boot_path (uki_paths())
UKI_NAME = "BOOTX64.EFI"
ESP_UKI_PATH = "EFI/BOOT/BOOTX64.EFI"
PUBKEY_NAME = "vendor-pubkey.pem"
REFERENCE_NAME = "reference.json"
SIGNING_KEY_NAME = "dev-signing-key.pem"


class BuildError(RuntimeError):
    """The board description or an input is unusable."""


@dataclass
class BuildOptions:
    board: str
    out: Path
    repo: Path = REPO
    cache: Path | None = None  # default: <repo>/build/cache
    keys: Path | None = None  # default: <repo>/build/keys
    signing_key: Path | None = None  # production key; default: development key in keys/
    ca_bundle: Path | None = None  # PEM; default: the development CA in keys/
    bundle_version: str | None = None
    anti_rollback_counter: int | None = None


@dataclass
class BuildResult:
    out: Path
    disk: Path
    reference: dict[str, object]
    timings: dict[str, float] = field(default_factory=dict)


def load_board(repo: Path, board: str) -> tuple[Path, dict[str, object]]:
    try:
        return repo / "board" / board, boards.description(board, repo)
    except boards.BoardError as e:
        raise BuildError(str(e)) from None


def uki_paths(repo: Path, board: str) -> tuple[str, str]:
    """(file name of the UKI in build/<board>/, its path on the ESP) for *board*."""
    plat = boards.platform(load_board(repo, board)[1])
    return plat.uki_name, plat.esp_boot_path


def efi_stub(plat: boards.Platform, cache: Path) -> Path:
    """systemd-stub for the board's architecture: a host file, or one unpacked from the board
    architecture's systemd-boot-efi package (``linuxaa64.efi.stub`` on arm64)."""
    if plat.efi_stub_package is None:
        return Path(plat.efi_stub_path)
    deb = kernel_fetch.download_deb(f"{plat.efi_stub_package}:{plat.deb_arch}", cache / "debs")
    root = cache / "efi-stub" / deb.stem
    stub = root / plat.efi_stub_path.lstrip("/")
    if not stub.is_file():
        kernel_fetch.extract_deb(deb, root)
    if not stub.is_file():
        raise BuildError(f"{deb.name} has no {plat.efi_stub_path} (board.json platform.efi_stub)")
    return stub


def _str(desc: dict[str, object], key: str) -> str:
    v = desc.get(key)
    if not isinstance(v, str):
        raise BuildError(f"board.json: {key!r} must be a string")
    return v


def _int(desc: dict[str, object], key: str) -> int:
    v = desc.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise BuildError(f"board.json: {key!r} must be an integer")
    return v


def _dict(desc: dict[str, object], key: str) -> dict[str, object]:
    v = desc.get(key)
    if not isinstance(v, dict):
        raise BuildError(f"board.json: {key!r} must be an object")
    return v


def _strlist(v: object, what: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise BuildError(f"board.json: {what} must be a list of strings")
    return list(v)


def osrel(board: str, version: str) -> bytes:
    """os-release (freedesktop os-release(5)) for the UKI's .osrel section."""
    return (f'ID=trusted-phone\nNAME="Trusted phone firmware"\nVERSION_ID={version}\n'
            f'IMAGE_ID={board}\nIMAGE_VERSION={version}\n').encode()


def component_pcr(desc: dict[str, object]) -> int:
    """The board's component register (``component_pcr``): the PCR the stage loader measures the
    bundle into.  Refused when the board's boot chain measures into it, when it is resettable or
    DRTM (firmware/pcr_registry.py names the owner), or when the sealing policy (``pcr_policy``)
    leaves it out (the credentials would not depend on the phone's software)."""
    pcr = _int(desc, "component_pcr")
    try:
        pcr_registry.check_component_pcr(pcr)  # type: ignore[no-untyped-call]
    except pcr_registry.PcrCollisionError as e:
        raise BuildError(f"board.json: 'component_pcr': {e}") from None
    policy = desc.get("pcr_policy")
    if (not isinstance(policy, list) or not policy
            or not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 23
                       for p in policy)):
        raise BuildError("board.json: 'pcr_policy' must be a non-empty list of PCR indices 0..23")
    if pcr not in policy:
        raise BuildError(f"board.json: 'pcr_policy' {policy} leaves out the component register "
                         f"PCR {pcr}: sealed credentials would not depend on the phone software")
    return pcr


def code_component(repo: Path, spec: dict[str, object], name: str) -> bytes:
    parts = _strlist(spec.get("firmware"), f"bundle.{name}.firmware")
    exclude = tuple("firmware/" + e for e in _strlist(spec.get("exclude", []),
                                                      f"bundle.{name}.exclude"))
    files = bundle.tree_files(repo, ["firmware" if p == "." else "firmware/" + p for p in parts],
                              exclude)
    if not files:
        note = (f"placeholder: none of firmware/{{{','.join(parts)}}} exists yet in this "
                "source tree; the component is kept so the bundle layout and PCR 14 event "
                "count do not change when the code lands.\n")
        return bundle.ustar([("PLACEHOLDER", note.encode())])
    # Ship byte code next to every source: unchecked-hash .pyc (PEP 552), deterministic, never
    # re-validated, so the device never compiles (compiling the phone code at each boot cost about
    # a second under TCG between the separator and the unseal).
    pycs = userland.compile_pyc([(repo / rel, rel) for rel, _ in files])
    with_pyc = list(files)
    for (rel, _), pyc in zip(files, pycs):
        d, _, base = rel.rpartition("/")
        with_pyc.append((f"{d}/__pycache__/{base[:-3]}.{initramfs.PYC_TAG}.pyc", pyc))
    return bundle.ustar(sorted(with_pyc))



def partitions(sizes: dict[str, object]) -> list[disk.Partition]:
    """The board's GPT layout (docs/image-format.md): ESP, firmware bank a, data, system, firmware
    bank b (last, so the partitions before it keep their offsets). Bank b starts empty (zeroes):
    the device fills it over SMP (docs/flashing.md)."""
    return [disk.Partition("esp", disk.ESP_TYPE, _int(sizes, "esp")),
            disk.Partition("phone-fw", disk.LINUX_DATA_TYPE, _int(sizes, "phone-fw")),
            disk.Partition("phone-data", disk.LINUX_DATA_TYPE, _int(sizes, "phone-data")),
            disk.Partition("phone-sys", disk.LINUX_DATA_TYPE, _int(sizes, "phone-sys")),
            disk.Partition("phone-fw-b", disk.LINUX_DATA_TYPE, _int(sizes, "phone-fw-b"))]

def build(opts: BuildOptions) -> BuildResult:
    t0 = time.monotonic()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = round(time.monotonic() - t0 - sum(timings.values()), 2)

    repo = opts.repo
    cache = opts.cache or repo / "build" / "cache"
    keys = opts.keys or repo / "build" / "keys"
    bdir, desc = load_board(repo, opts.board)
    try:
        plat, emu = boards.platform(desc), boards.emulator(desc)
        arch_cache = boards.package_cache(cache, plat)
    except boards.BoardError as e:
        raise BuildError(str(e)) from None
    arch = userland.Arch(plat.triplet, plat.ld_so, plat.ld_so_link)
    foreign = arch_cache != cache   # packages named PKG:ARCH
    version = opts.bundle_version or _str(desc, "image_version")
    counter = (opts.anti_rollback_counter if opts.anti_rollback_counter is not None
               else _int(desc, "anti_rollback_counter"))
    pcr = component_pcr(desc)  # first: a colliding board description builds nothing
    cmdline = _str(desc, "cmdline")
    if cmdline != cmdline.strip() or not cmdline.isascii():
        raise BuildError("board.json: cmdline must be ASCII without leading/trailing blanks "
                         "(systemd-stub would change it and PCR 9 would not match)")
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)

    # 1. Signed phone bundle.
    spec = _dict(desc, "bundle")
    key_path = opts.signing_key or keys / SIGNING_KEY_NAME
    key = bundle.load_or_create_key(key_path, create=opts.signing_key is None)
    ca_pem = (opts.ca_bundle.read_bytes() if opts.ca_bundle else devca.load_or_create(keys))
    config = json.loads((bdir / _str(spec, "device-config")).read_text())
    components = [
        bundle.Component("phone-app", version,
                         code_component(repo, _dict(spec, "phone-app"), "phone-app")),
        bundle.Component("sip-media", version,
                         code_component(repo, _dict(spec, "sip-media"), "sip-media")),
        bundle.Component("device-config", version, bundle.canonical_json(config)),
        bundle.Component("ca-bundle", version, ca_pem),
    ]
    manifest = bundle.manifest(opts.board, version, counter, components, pcr)
    signature = bundle.sign(key, manifest)
    packed = bundle.pack(manifest, signature, components)
    bundle_dir = out / "bundle"
    if bundle_dir.exists():
        shutil.rmtree(bundle_dir)
    (bundle_dir / "components").mkdir(parents=True)
    (bundle_dir / bundle.MANIFEST_NAME).write_bytes(manifest)
    (bundle_dir / bundle.SIGNATURE_NAME).write_bytes(signature)
    for c in components:
        (bundle_dir / "components" / c.name).write_bytes(c.data)
    (out / "bundle.tar").write_bytes(packed)
    (out / PUBKEY_NAME).write_bytes(bundle.public_pem(key))
    lap("bundle")

    # 2. Initramfs.
    kernel_desc = _dict(desc, "kernel")
    kernel = kernel_fetch.fetch_kernel(arch_cache / "kernel", _str(kernel_desc, "metapackage"),
                                       plat.deb_arch if foreign else None)
    root = userland.fetch_and_unpack(arch_cache, tuple(
        f"{p}:{plat.deb_arch}" if foreign else p for p in userland.PACKAGES))
    tree = userland.python_tree(root, arch_cache, repo / "firmware", arch)
    lap("userland")
    # The CPython userland goes to the dm-verity system partition, its root hash on the command
    # line (host_tools/image/sysimage.py); the initramfs keeps busybox, modules, /init, the
    # loader's code and the dm-verity helper.
    sizes = _dict(desc, "partitions_mib")
    tree, sys_tree = sysimage.split(tree, arch)
    sys_img = sysimage.build(sys_tree, opts.board, _int(desc, "source_date_epoch"),
                             _int(sizes, "phone-sys"))
    tree.add(sysimage.HELPER_PATH, sysimage.compile_helper(bdir / "dm-verity-setup.c", plat.cc), 0o755)
    # first, so the board's own arguments keep the end of the line (the tamper tool's default
    # --uki cmdline byte is the last one: panic=-1 -> panic=-2, a boot that still runs)
    cmdline = f"{sys_img.cmdline_arg()} {cmdline}"
    lap("sysimage")
    kmods = modules.resolve(kernel.modules_dir, plat.modules)
    fw_spec = _dict(desc, "initramfs_firmware")
    fw_files = initramfs.firmware_files(
        repo, _strlist(fw_spec.get("firmware"), "initramfs_firmware.firmware"),
        tuple(_strlist(fw_spec.get("exclude", []), "initramfs_firmware.exclude")))
    initrd = initramfs.build(tree, kmods, (bdir / "init.sh").read_bytes(), fw_files,
                             {initramfs.VENDOR_KEY_PATH: bundle.public_pem(key),
                              initramfs.BOARD_PATH: opts.board.encode() + b"\n",
                              initramfs.COMPONENT_PCR_PATH: b"%d\n" % pcr,
                              initramfs.ESP_BOOT_PATH_PATH: plat.esp_boot_path.encode() + b"\n"})
    (out / "initrd.img").write_bytes(initrd)
    lap("initramfs")

    # 3. UKI.
    sections = {".osrel": osrel(opts.board, version), ".cmdline": cmdline.encode(),
                ".linux": kernel.vmlinuz.read_bytes(), ".initrd": initrd}
    uki_bytes = uki.build_uki(efi_stub(plat, arch_cache), sections, out / plat.uki_name,
                              plat.objcopy)
    secure_boot = desc.get("secure_boot", False)
    if not isinstance(secure_boot, bool):
        raise BuildError("board.json: 'secure_boot' must be true or false")
    sb_keys = secureboot.load_or_create_keys(keys) if secure_boot else {}
    enrolled_vars = out / secureboot.ENROLLED_VARS_NAME
    if secure_boot:
        # signed with the vendor's db key; the board's OVMF variables get PK/KEK/db enrolled
        # (host_tools/image/secureboot.py); devices start from that store (host_tools/qemu)
        uki_bytes = secureboot.sign_pe(uki_bytes, sb_keys["db"], _int(desc, "source_date_epoch"))
        (out / plat.uki_name).write_bytes(uki_bytes)
        secureboot.enroll_vars(sb_keys, enrolled_vars, emu.secure_boot_vars_template)
    else:
        enrolled_vars.unlink(missing_ok=True)
    (out / "cmdline.txt").write_text(cmdline)
    (out / "osrel.txt").write_bytes(sections[".osrel"])
    # the UKI as an SMP update carries it: signed with the vendor's bundle key, domain-separated
    # (host_tools/image/uki_package.py; a delta against an older UKI: host_tools/image/uki_delta.py)
    (out / uki_package.PACKAGE_NAME).write_bytes(
        uki_package.build_package(key, opts.board, version, counter, uki_bytes))
    lap("uki")

    # 4. Disk.
    parts = partitions(sizes)
    esp_img = out / "esp.img"
    disk.make_esp(esp_img, parts[0].size_mib, {plat.esp_boot_path: uki_bytes}, opts.board,
                  _int(desc, "source_date_epoch"))
    disk_path = out / DISK_NAME
    disk.build_disk(disk_path, opts.board, parts,
                    {"esp": esp_img, "phone-fw": packed, "phone-sys": sys_img.partition})
    esp_img.unlink()
    lap("disk")

    # 5. Prediction.
    with disk_path.open("rb") as f:
        disk_head = f.read(disk.MIB)
    events = (predict.pcr4_events(uki_bytes, secure_boot) + predict.pcr5_events(disk_head)
              + (secureboot.pcr7_events(enrolled_vars, sb_keys["db"].cert_der()) if secure_boot
                 else predict.pcr7_events())
              + predict.pcr9_events(cmdline, initrd) + predict.pcr11_events(uki_bytes)
              + predict.pcr14_events([(c.name, c.sha256) for c in components],
                                     (opts.board, version, counter), pcr))
    values = predict.pcr_values(events)
    reference: dict[str, object] = {
        "schema_version": REFERENCE_SCHEMA,
        "board": opts.board,
        "image_version": version,
        "bundle_version": version,
        "anti_rollback_counter": counter,
        "pcr_policy": desc.get("pcr_policy"),
        "secure_boot": ({"enabled": True, "vars": secureboot.ENROLLED_VARS_NAME,
                         "owner": str(secureboot.VENDOR_OWNER),
                         "db_cert_sha256": predict.sha256(sb_keys["db"].cert_der()).hex(),
                         # the PCRs that differ when the same disk boots with Secure Boot off
                         # (plain OVMF, no keys): 4 gains the kernel's LoadImage, 7 the empty
                         # key databases; for tests and for a vendor that ships without keys
                         "pcrs_secure_boot_off": {str(k): v.hex() for k, v in predict.pcr_values(
                             predict.pcr4_events(uki_bytes) + predict.pcr7_events()).items()
                             if k in (4, 7)}}
                        if secure_boot else {"enabled": False}),
        "bundle": {"board": opts.board, "bundle_version": version,
                   "anti_rollback_counter": counter, "pcr": pcr,
                   "sha256": predict.sha256(
                       predict.bundle_event_data(opts.board, version, counter)).hex()},
        "components": [{"name": c.name, "version": c.version, "size": len(c.data),
                        "sha256": c.sha256.hex(), "pcr": pcr}
                       for c in components],
        "boot": {
            "uki_authenticode_sha256": pe.authenticode_digest(uki_bytes).hex(),
            # the UKI file as on the ESP: uki.tar's signed `uki`, and the base a delta names
            "uki_sha256": predict.sha256(uki_bytes).hex(),
            "uki_size": len(uki_bytes),
            "kernel_package": f"{kernel.package} {kernel.package_version}",
            "kernel_authenticode_sha256": pe.authenticode_digest(
                sections[".linux"]).hex(),
            "initrd_sha256": predict.sha256(initrd).hex(),
            "system_partition": {"root_hash": sys_img.root_hash.hex(), "salt": sys_img.salt.hex(),
                                 "data_blocks": sys_img.data_blocks,
                                 "size": len(sys_img.partition)},
            "cmdline": cmdline,
            "manifest_sha256": predict.sha256(manifest).hex(),
        },
        "pcrs": {"sha256": {str(k): v.hex() for k, v in values.items()}},
        "events": [e.to_json() for e in events],
    }
    (out / REFERENCE_NAME).write_bytes(json.dumps(reference, indent=2, sort_keys=True).encode()
                                       + b"\n")
    # 6. The vendor-signed reference set (host_tools/image/references.py): this image joins the
    # images the set in `out` already accepts; min_version never goes down by building an older one.
    prev = references.read_signed(out, key)
    floor = desc.get("min_version")
    if floor is not None and not isinstance(floor, str):
        raise BuildError("board.json: 'min_version' must be a version string")
    if floor is None:
        floor = max([version] + ([str(prev["min_version"])] if prev else []),
                    key=references.version_key)
    references.update(out, key, opts.board, [references.image_entry(reference)], floor)
    lap("predict")
    return BuildResult(out, disk_path, reference, timings)
