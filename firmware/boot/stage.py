# The stage loader's decision, sans-I/O: measure first, verify second, decide last.
#
# 1. Split the bundle (a ustar archive) into manifest.json, manifest.sig and the components.
# 2. Measure the bundle's identity first: one EV_EVENT_TAG "bundle" event whose digest is the hash
#    of (board, bundle version, anti-rollback counter) as the manifest found states them (placeholders
#    when no manifest parses), so a rollback to an older bundle with identical components still
#    changes the component register (the board's `component_pcr`, PCR 14 on qemu-x86_64:
#    firmware/pcr_registry.py, docs/pcr-map.md). Then every component found, in the order found: one EV_EVENT_TAG per
#    component in the phone log (firmware.eventlog.PhoneLog) and the same digests extended into the
#    TPM through `extend(pcr, {bank: digest})`; then the separator. This happens before any check,
#    so a bundle that is refused still leaves an exact record of what was on the flash, and nothing
#    is measured after the separator (the log refuses it).
# 3. Verify: the signature over the manifest with the vendor key, then that the components found
#    are exactly the signed ones (names, order, sizes, SHA-256), the board and the anti-rollback
#    counter. The first failure is the reason the bundle is refused; it names the component.
#
# The manifest's version strings label the events before the signature is checked: they are only
# labels (a verifier compares them with reference.json); the digests are what the PCR commits to.

from firmware import compat
from firmware.boot import manifest as manifest_mod
from firmware.boot import ustar
from firmware.errors import ParseError
from firmware.eventlog.writer import PHONE_PCR, PhoneLog

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
UNLISTED = "unlisted"  # version label of a component the manifest does not name
NO_MANIFEST = "?"     # board and version of the bundle event when no manifest parses
STATE_VERIFIED = "verified"
STATE_REFUSED = "refused"
MAX_LABEL = 255


class Outcome:
    """What the loader found, measured and decided. `components` holds (name, bytes) of what was
    found; only when `state == STATE_VERIFIED` may any of it be started."""

    def __init__(self):
        self.state = STATE_REFUSED
        self.reason = None
        self.manifest = None
        self.components = []
        self.measured = []  # (name, version, {bank: digest}) of the components, in extend order
        self.bundle = None  # (board, bundle version, counter, {bank: digest}) of the bundle event
        self.log = None     # the PhoneLog, closed

    def to_json(self):
        comps = []
        for name, version, digests in self.measured:
            entry = {"name": name, "version": version}
            for bank in digests:
                entry[bank] = digests[bank].hex()
            comps.append(entry)
        out = {"state": self.state, "components": comps, "reason": self.reason}
        if self.log is not None:
            out["component_pcr"] = self.log.pcr  # the board's component register
        if self.bundle is not None:
            board, version, counter, digests = self.bundle
            ev = {"board": board, "bundle_version": version, "anti_rollback_counter": counter}
            for bank in digests:
                ev[bank] = digests[bank].hex()
            out["bundle_event"] = ev
        if self.manifest is not None:
            out["bundle_version"] = self.manifest["bundle_version"]
            out["anti_rollback_counter"] = self.manifest["anti_rollback_counter"]
            out["board"] = self.manifest["board"]
        return out


def _label(text):
    raw = text.encode("utf-8")
    if len(raw) <= MAX_LABEL:
        return text
    return raw[:MAX_LABEL].decode("utf-8", "ignore") or "?"


def split(image):
    """(manifest bytes or None, signature or None, [(name, bytes)], archive error or None).
    manifest.json and manifest.sig count only as the archive's leading members (the layout
    host_tools/image/bundle.py writes); anywhere else they are components like any other."""
    members, err = ustar.scan(image)
    man = sig = None
    comps = []
    for name, data in members:
        if name == MANIFEST_NAME and man is None and sig is None and not comps:
            man = data
        elif name == SIGNATURE_NAME and man is not None and sig is None and not comps:
            sig = data
        else:
            comps.append((name, data))
    return man, sig, comps, err


def measure_and_verify(image, extend, verify_signature, banks=("sha256",), board=None,
                       min_counter=0, floor_error=None, pcr=PHONE_PCR, pcr_error=None):
    """Measure `image` (the firmware partition's bytes) into PCR `pcr` (the board's component
    register, checked by firmware.pcr_registry), then verify it.
    `verify_signature(manifest_bytes, signature) -> bool` checks with the vendor key; None means no
    key is available (every bundle is then unsigned). `board`: this device's board name (None: not
    checked). `min_counter`: the anti-rollback floor, a bundle whose counter is below it is refused;
    `floor_error`: why the floor could not be read (then every bundle is refused, fail closed).
    `pcr_error`: why the board's component register setting is unusable (the caller measures into
    the default register instead; every bundle is then refused).
    Exceptions from `extend` propagate: the TPM failed and the caller must refuse to start
    anything."""
    out = Outcome()
    man_bytes, sig, comps, archive_err = split(image)
    out.components = comps
    untrusted = None
    manifest_err = None
    if man_bytes is not None:
        try:
            untrusted = manifest_mod.parse(man_bytes)
        except ParseError as e:
            manifest_err = e
    versions = {}
    if untrusted is not None:
        for c in untrusted["components"]:
            versions[c["name"]] = c["version"]

    log = PhoneLog(banks, pcr)
    out.log = log
    if untrusted is not None:
        ident = (untrusted["board"], untrusted["bundle_version"],
                 untrusted["anti_rollback_counter"])  # parse() bounds all three
    else:
        ident = (NO_MANIFEST, NO_MANIFEST, 0)
    digests = log.add_bundle(ident[0], ident[1], ident[2])
    extend(log.pcr, digests)
    out.bundle = (ident[0], ident[1], ident[2], digests)
    for name, data in comps:
        label = _label(name)
        version = versions.get(name, UNLISTED)
        digests = log.add_component(label, version, data)
        extend(log.pcr, digests)
        out.measured.append((label, version, digests))
    extend(log.pcr, log.close())

    # the SHA-256 each component was just measured with (None when that bank is not active)
    measured = [d.get("sha256") for _, _, d in out.measured]
    out.reason = _verify(man_bytes, sig, comps, archive_err, untrusted, manifest_err,
                         verify_signature, board, min_counter, floor_error, measured,
                         pcr, pcr_error)
    if out.reason is None:
        out.state = STATE_VERIFIED
        out.manifest = untrusted
    elif untrusted is not None and out.reason.startswith("anti-rollback"):
        out.manifest = untrusted  # signed, only too old: show which version was refused
    return out


def check_bundle(image, verify_signature, board=None, min_counter=0, pcr=PHONE_PCR):
    """None when `image` is a bundle this device may run (signature, board, anti-rollback floor,
    components exactly as signed, into the board's component register `pcr`), else the reason.
    No measuring: an update checks what it wrote."""
    man_bytes, sig, comps, archive_err = split(image)
    manifest = manifest_err = None
    if man_bytes is not None:
        try:
            manifest = manifest_mod.parse(man_bytes)
        except ParseError as e:
            manifest_err = e
    return _verify(man_bytes, sig, comps, archive_err, manifest, manifest_err, verify_signature,
                   board, min_counter, pcr=pcr)


def check_manifest(man_bytes, sig, manifest, manifest_err, verify_signature, board, min_counter,
                   floor_error=None, what="bundle"):
    """The checks that need only the leading manifest.json and manifest.sig: signature, then the
    signed board and anti-rollback counter. An upload runs these before it writes a byte.
    `what` names the signed thing in the reasons (a UKI package shares these checks:
    firmware/update/uki_package.py, whose `verify_signature` adds its domain prefix)."""
    if man_bytes is None:
        return "unsigned bundle: no %s at the start of the archive" % MANIFEST_NAME
    if sig is None:
        return "unsigned bundle: no %s after the manifest" % SIGNATURE_NAME
    if verify_signature is None:
        return "no vendor public key in this loader: cannot verify the %s" % what
    try:
        ok = verify_signature(man_bytes, sig)
    except Exception as e:  # fail closed on any verifier problem
        return "signature check failed: %s" % e
    if ok is not True:
        return "manifest signature does not verify with the vendor key"
    if manifest_err is not None:
        return "signed manifest malformed: %s" % manifest_err
    if board is not None and manifest["board"] != board:
        return "%s is for board %r, this is %r" % (what, manifest["board"], board)
    if floor_error is not None:
        return "anti-rollback floor unreadable: %s" % floor_error
    if manifest["anti_rollback_counter"] < min_counter:
        return "anti-rollback: %s counter %d is below this device's floor %d" % (
            what, manifest["anti_rollback_counter"], min_counter)
    return None


def _verify(man_bytes, sig, comps, archive_err, manifest, manifest_err, verify_signature, board,
            min_counter, floor_error=None, measured=None, pcr=PHONE_PCR, pcr_error=None):
    """None when the bundle may run, else the reason (one line naming what is wrong)."""
    if pcr_error is not None:
        return "board setting unusable: %s" % pcr_error
    if archive_err is not None:
        return "bundle archive malformed: %s" % archive_err
    reason = check_manifest(man_bytes, sig, manifest, manifest_err, verify_signature, board,
                            min_counter, floor_error)
    if reason is not None:
        return reason
    signed = manifest["components"]
    signed_names = [c["name"] for c in signed]
    found_names = [n for n, _ in comps]
    seen = {}
    for n in found_names:
        if n in seen:
            return "component %r appears twice in the bundle" % n
        seen[n] = True
        if n not in signed_names:
            return "component %r is not in the signed manifest" % n
    for n in signed_names:
        if n not in seen:
            return "component %r of the signed manifest is missing" % n
    if found_names != signed_names:
        return "components out of order: found %s, signed %s" % (
            ",".join(found_names), ",".join(signed_names))
    for i, ((name, data), entry) in enumerate(zip(comps, signed)):
        if entry["pcr"] != pcr:
            return "component %r: manifest asks for PCR %d, this board measures into PCR %d" % (
                name, entry["pcr"], pcr)
        if len(data) != entry["size"]:
            return "component %r: %d bytes, the signed manifest says %d" % (
                name, len(data), entry["size"])
        # the digest the measurement computed from these same bytes, when there is one
        digest = measured[i] if measured and i < len(measured) and measured[i] else None
        if not compat.constant_time_equal(digest or compat.sha256(data), entry["sha256"]):
            return "component %r: sha256 differs from the signed manifest" % name
    return None
