# Appraisal of evidence (issue 10 §2-3, docs/attestation.md "## Integrity levels"): sans-I/O, the
# same code on the phone (judging a peer at call set-up) and on the host (host_tools.verify
# --quote). Order is the point: nothing the evidence claims is believed until
#   1. the AK certificate chains to a device CA and certifies the key that signed,
#   2. the TPMT_SIGNATURE (ECDSA P-256, SHA-256; TPM 2.0 Part 2 §11.3.4) verifies over the
#      TPMS_ATTEST bytes (Part 2 §10.12.12: magic TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE),
#   3. extraData equals the nonce this appraiser chose (freshness),
#   4. pcrDigest (TPMS_QUOTE_INFO, Part 2 §10.12.4) equals the hash of the PCR values the
#      evidence lists, concatenated in the quote's selection order (Part 3 §18.4),
#   5. each event log replays (PFP §10.2; Part 1 §17.6.4) to exactly those quoted values.
# Only then are the log's events evidence: the bundle event names the image version, the
# component events name what ran; they and the quoted PCRs are compared with the vendor-signed
# reference set (firmware/attest/trust.py) -> verified / outdated / unknown. Any failure in 1-5 is
# `failed`; no evidence at all is `unattested` (firmware/attest/levels.py).
#
# A phone judges the same peers call after call, and most of their evidence does not change
# between calls: the AK certificate, and the event logs (fixed once the peer has booted). A
# `Memo` (the phone's RemoteJudge keeps one) remembers, keyed by the exact text (the SHA-256 of
# it for the logs), the AK chains it verified and the logs it parsed and replayed successfully;
# what binds evidence to this call is checked every time: certificate validity now, the quote's
# signature, nonce, selection, pcrDigest, and that the (remembered) replay equals the quoted
# PCRs. Same input, same answer: a memo only skips recomputing what the key fixes.

import binascii

from firmware import compat
from firmware.attest import evidence as ev_mod
from firmware.attest import levels, pki, trust as trust_mod
from firmware.attest import quote as quote_mod
from firmware.attest.errors import EvidenceError
from firmware.errors import ParseError
from firmware.eventlog.component import bundle_or_none, component_or_none
from firmware.eventlog.parser import parse_log
from firmware.eventlog.replayer import initial_value, replay
from firmware.eventlog.types import EV_EVENT_TAG, EV_NO_ACTION, EV_SEPARATOR
from firmware.tpm import constants as C
from firmware.tpm.attest import parse_attest
from firmware.tpm.marshal import Reader
from firmware.tpm.structures import SIGNATURE

BANK = "sha256"
# The PCRs every quote must cover (firmware/attest/quote.py): fewer would leave a stage unjudged.
# The component register is the board's (the reference image's "pcr"): events in a register the
# quote leaves out are refused as evidence (check 5), so its components cannot be judged either.
REQUIRED_PCRS = list(quote_mod.BOOT_PCRS)
LOG_ORDER = ("firmware", "phone")

# check names, in report order
CHECK_EVIDENCE = "evidence"
CHECK_CHAIN = "AK certificate chain"
CHECK_AK_KEY = "AK key certified"
CHECK_SIGNATURE = "quote signature"
CHECK_NONCE = "nonce"
CHECK_SELECTION = "PCR selection"
CHECK_DIGEST = "PCR digest"
CHECK_REPLAY = "log replay"
CHECK_IMAGE = "image"
CHECK_COMPONENTS = "components"
CHECK_PCRS = "reference PCRs"
CHECK_CURRENT = "version and revocations"


class Judgement:
    """The appraiser's answer. `level` (levels.ORDER), `image_version` (from the replayed bundle
    event, else None), `differs` (component names and "PCR n"), `why` (one line), `checks`
    (ordered (name, ok, detail)); for reports: `pcrs` (list of dicts pcr/replayed/quoted/expected,
    hex or None), `components` (list of dicts name/version/expected_version/sha256/
    expected_sha256/status), `board`."""

    def __init__(self, level, why, checks=None, differs=None, image_version=None):
        self.level = level
        self.why = why
        self.checks = checks if checks is not None else []
        self.differs = differs if differs is not None else []
        self.image_version = image_version
        self.pcrs = []
        self.components = []
        self.board = None

    @property
    def ok(self):
        return self.level == levels.VERIFIED

    def summary(self):
        """{"level", "image_version", "differs", "why"}: what `status` shows for a call."""
        return {"level": self.level, "image_version": self.image_version,
                "differs": list(self.differs), "why": self.why}

    def to_dict(self):
        out = self.summary()
        out["board"] = self.board
        out["checks"] = [{"name": n, "ok": ok, "detail": d} for n, ok, d in self.checks]
        out["pcrs"] = list(self.pcrs)
        out["components"] = list(self.components)
        return out

    def __repr__(self):
        return "Judgement(%s: %s)" % (self.level, self.why)


def _b64(text):
    # evidence.check has already held every base64 field to RFC 4648 (alphabet, padding, size)
    return binascii.a2b_base64(text)


def _hex(b):
    return None if b is None else b.hex()


class _Run:
    def __init__(self):
        self.checks = []

    def ok(self, name, detail):
        self.checks.append((name, True, detail))

    def fail(self, name, detail):
        self.checks.append((name, False, detail))
        return False

    def failed(self, name, detail):
        """A Judgement `failed` for this check (recorded)."""
        self.fail(name, detail)
        return Judgement(levels.FAILED, "%s: %s" % (name, detail), self.checks)


class Memo:
    """Bounded memory of verified AK chains and replayed logs (see the module comment), for one
    trust (the device CAs the chains were checked against): appraise() forgets it for another."""

    KEEP = 8  # peers remembered (each entry: a certificate object, or ~two parsed logs)

    def __init__(self):
        self.trust = None
        self.chains = []   # [(ak_cert text, (cert, ca, detail))], oldest first
        self.replays = []  # [(sha256 of both logs' base64, (logs, owner, replayed))]
        self.hits = 0

    def _for(self, trust):
        if self.trust is not trust:
            self.trust = trust
            self.chains = []
            self.replays = []

    @staticmethod
    def _get(entries, key):
        for k, v in entries:
            if k == key:
                return v
        return None

    def _put(self, entries, key, value):
        entries.append((key, value))
        if len(entries) > self.KEEP:
            entries.pop(0)


def _chain(ak_cert, trust, memo):
    hit = memo._get(memo.chains, ak_cert) if memo is not None else None
    if hit is not None:
        memo.hits += 1
        return hit
    got = pki.chain(ak_cert, trust.device_cas)
    if memo is not None:
        memo._put(memo.chains, ak_cert, got)
    return got


def appraise(evidence, expected_nonce, trust, now=None, memo=None):
    """Judge `evidence` (dict, or encoded bytes/str; None: the peer sent none) for the nonce this
    side chose (bytes), with `trust` (trust.Trust); `now`: seconds since the epoch for
    certificate validity (None: not checked, and the check's detail says so); `memo`: a Memo
    kept between calls (None: everything is computed afresh)."""
    if memo is not None:
        memo._for(trust)
    if evidence is None:
        return Judgement(levels.UNATTESTED, "no evidence: the peer did not attest")
    run = _Run()
    try:
        ev = ev_mod.decode(evidence) if isinstance(evidence, (bytes, bytearray, str)) \
            else ev_mod.check(evidence)
    except EvidenceError as e:
        return run.failed(CHECK_EVIDENCE, str(e))
    run.ok(CHECK_EVIDENCE, "version %d, %d PCRs, board %s" % (ev["version"], len(ev["pcrs"]),
                                                             ev["board"]))
    if not pki.available():
        return run.failed(CHECK_CHAIN, "no X.509/ECDSA support on this runtime")
    # 1. AK certificate -> device CA; the certified key is the one that signs (never ak_pub alone)
    try:
        cert, ca, detail = _chain(ev["ak_cert"], trust, memo)
        detail += pki.check_times(cert, ca, now)
        key = pki.check_p256(cert)
    except pki.PkiError as e:
        return run.failed(CHECK_CHAIN, str(e))
    run.ok(CHECK_CHAIN, detail)
    if not pki.cert_key_matches(cert, ev["ak_pub"]):
        return run.failed(CHECK_AK_KEY, "ak_pub is not the key in the AK certificate")
    run.ok(CHECK_AK_KEY, "ak_pub is the certified P-256 key")
    # 2. signature over the exact TPMS_ATTEST bytes (evidence.check parsed both structures)
    attest_bytes = _b64(ev["quote"])
    attest = parse_attest(attest_bytes)
    sig = SIGNATURE.read(Reader(_b64(ev["signature"])), "signature")
    if sig["sigAlg"] != C.TPM_ALG_ECDSA or sig.get("hash") != C.TPM_ALG_SHA256:
        return run.failed(CHECK_SIGNATURE, "TPMT_SIGNATURE is alg 0x%04x hash 0x%04x, not ECDSA "
                          "with SHA-256" % (sig["sigAlg"], sig.get("hash", 0)))
    if not pki.verify_ecdsa_sha256(key, attest_bytes, sig["r"], sig["s"]):
        return run.failed(CHECK_SIGNATURE, "ECDSA signature over TPMS_ATTEST does not verify with "
                          "the certified AK")
    run.ok(CHECK_SIGNATURE, "ECDSA P-256/SHA-256 over TPMS_ATTEST (magic 0x%08x, quote) verifies"
           % attest["magic"])
    # 3. freshness: the nonce is ours, and the TPM signed it
    nonce = bytes(expected_nonce)
    if attest["extraData"] != nonce:
        return run.failed(CHECK_NONCE, "quote's extraData %s is not the nonce %s"
                          % (_short(attest["extraData"]), _short(nonce)))
    if bytes.fromhex(ev["nonce"]) != nonce:
        return run.failed(CHECK_NONCE, "evidence nonce field %s is not the nonce %s"
                          % (_short(bytes.fromhex(ev["nonce"])), _short(nonce)))
    run.ok(CHECK_NONCE, "extraData = %s" % _short(nonce))
    # 4. the quoted selection covers the required PCRs; pcrDigest binds the listed values
    quoted = _selection_pcrs(attest["pcrSelect"])
    if quoted is None:
        return run.failed(CHECK_SELECTION, "quote selects %s, not one %s bank"
                          % (_describe_sel(attest["pcrSelect"]), BANK))
    listed = sorted(int(k) for k in ev["pcrs"])
    if ev["pcr_bank"] != BANK or listed != quoted:
        return run.failed(CHECK_SELECTION, "evidence lists %s PCRs %s, the quote selects %s"
                          % (ev["pcr_bank"], _pcr_list(listed), _pcr_list(quoted)))
    missing = [p for p in REQUIRED_PCRS if p not in quoted]
    if missing:
        return run.failed(CHECK_SELECTION, "quote leaves out PCR %s" % _pcr_list(missing))
    run.ok(CHECK_SELECTION, "%s PCRs %s" % (BANK, _pcr_list(quoted)))
    values = dict((int(k), bytes.fromhex(v)) for k, v in ev["pcrs"].items())
    digest = compat.digest(BANK, b"".join(values[p] for p in quoted))
    if digest != attest["pcrDigest"]:
        return run.failed(CHECK_DIGEST, "pcrDigest %s is not the hash of the listed PCR values (%s):"
                          " the PCR values are not the ones the TPM quoted"
                          % (_short(attest["pcrDigest"]), _short(digest)))
    run.ok(CHECK_DIGEST, "hash of the listed values = pcrDigest %s" % _short(digest))
    # 5. replay every log against the QUOTED values
    key = compat.sha256("\n".join(ev["logs"][n] for n in LOG_ORDER).encode())
    done = memo._get(memo.replays, key) if memo is not None else None
    if done is not None:
        memo.hits += 1
    else:
        done = _replay(run, ev)
        if isinstance(done, Judgement):
            return done
        if memo is not None:
            memo._put(memo.replays, key, done)
    logs, owner, replayed = done
    size = len(values[quoted[0]])
    table = []
    bad = []
    for p in quoted:
        rp = replayed.get(p, initial_value(size, p))
        table.append({"pcr": p, "replayed": rp.hex(), "quoted": values[p].hex(), "expected": None,
                      "log": owner.get(p)})
        if rp != values[p]:
            bad.append(p)
    if bad:
        j = run.failed(CHECK_REPLAY, "the logs do not replay to the quoted PCR %s (%s): the log is "
                       "not what was measured" % (_pcr_list(bad), ", ".join(
                           "PCR %d from the %s log" % (p, owner.get(p, "no")) for p in bad)))
        j.differs = ["PCR %d" % p for p in bad]
        j.pcrs = table
        return j
    run.ok(CHECK_REPLAY, "%s log%s replay to the quoted PCRs" % (
        " and ".join(n for n, _ in logs), "s" if len(logs) > 1 else ""))
    return _compare(run, logs, values, table, trust.references, quoted)


def _replay(run, ev):
    """(logs, owner, replayed) for both logs of the evidence (parsed, each PCR extended by one
    log only, replayed in BANK), or the failed Judgement."""
    logs = []
    for name in LOG_ORDER:
        raw = _b64(ev["logs"][name])
        try:
            logs.append((name, parse_log(raw)))
        except ParseError as e:
            return run.failed(CHECK_REPLAY, "%s log: %s" % (name, e))
    owner = {}
    replayed = {}
    for name, log in logs:
        if BANK not in log.header.banks:
            return run.failed(CHECK_REPLAY, "%s log has no %s bank" % (name, BANK))
        touched = set(e.pcr for e in log.events if e.type != EV_NO_ACTION)
        if log.startup_locality:
            touched.add(0)
        for p in touched:
            if p in owner:
                return run.failed(CHECK_REPLAY, "the %s and %s logs both extend PCR %d"
                                  % (owner[p], name, p))
            owner[p] = name
        r = replay(log, [BANK])[BANK]
        for p in touched:
            replayed[p] = r[p]
    return logs, owner, replayed


def _compare(run, logs, values, table, refs, quoted):
    """Steps after a successful replay: the events of the quoted PCRs are evidence now."""
    phone = _phone_events(logs, quoted)
    bundle, comps, separated, problem = phone
    differs = []
    j = Judgement(levels.UNKNOWN, "", run.checks)
    j.pcrs = table
    j.board = bundle[0] if bundle else None
    j.image_version = bundle[1] if bundle else None
    if problem:
        run.fail(CHECK_IMAGE, problem)
        differs.append("bundle")
        j.differs = differs
        j.why = problem
        return j
    board, version, counter, bundle_digest, bundle_pcr = bundle
    image = trust_mod.find_image(refs, board, version)
    if board != refs["board"] or image is None:
        run.fail(CHECK_IMAGE, "image %s for board %s is not in the vendor's reference set"
                 % (version, board))
        for c in comps:
            if c["sha256"] not in trust_mod.known_digests(refs, c["name"]):
                differs.append(c["name"])
            j.components.append(_row(c, None, "unknown" if c["name"] in differs else "known"))
        differs.insert(0, "bundle")
        j.differs = differs
        j.why = "image %s (board %s) is not one the vendor's reference set knows" % (version, board)
        return j
    run.ok(CHECK_IMAGE, "bundle %s (anti-rollback counter %d, board %s) is a vendor image"
           % (version, counter, board))
    # components: in the reference's order, each digest and version equal
    expected = image["components"]
    got = dict((c["name"], c) for c in comps)
    names = [c["name"] for c in comps]
    if bundle_digest != image["bundle_sha256"] or counter != image["anti_rollback_counter"] \
            or bundle_pcr != image["pcr"]:
        differs.append("bundle")
    for i, e in enumerate(expected):
        c = got.get(e["name"])
        if c is None:
            j.components.append(_row(None, e, "missing"))
            differs.append(e["name"])
            continue
        if c["sha256"] != e["sha256"] or c["version"] != e["version"] or c["pcr"] != image["pcr"]:
            status = "differs"
        elif names.index(e["name"]) != i:
            status = "out of order"
        else:
            status = "ok"
        j.components.append(_row(c, e, status))
        if status != "ok":
            differs.append(e["name"])
    for c in comps:
        if c["name"] not in [e["name"] for e in expected]:
            j.components.append(_row(c, None, "extra"))
            differs.append(c["name"])
    if image["pcr"] not in separated:
        differs.append("PCR %d" % image["pcr"])
    comp_bad = [d for d in differs if not d.startswith("PCR ")]
    if comp_bad:
        run.fail(CHECK_COMPONENTS, "differ from image %s: %s" % (version, ", ".join(comp_bad)))
    else:
        run.ok(CHECK_COMPONENTS, "%d components equal image %s" % (len(expected), version))
    # predicted PCRs of the image vs the quoted values
    pred = image["pcrs"].get(BANK, {})
    pcr_bad = []
    for row in table:
        exp = pred.get(row["pcr"])
        row["expected"] = _hex(exp)
        if exp is not None and exp != values[row["pcr"]]:
            pcr_bad.append(row["pcr"])
    for p in sorted(pred):
        if p not in values:
            pcr_bad.append(p)
    for p in pcr_bad:
        if "PCR %d" % p not in differs:
            differs.append("PCR %d" % p)
    if pcr_bad:
        run.fail(CHECK_PCRS, "PCR %s not the predicted value" % _pcr_list(sorted(pcr_bad)))
    else:
        run.ok(CHECK_PCRS, "PCR %s equal the image's predicted values" % _pcr_list(sorted(pred)))
    j.differs = differs
    if differs:
        j.level = levels.UNKNOWN
        j.why = "image %s: %s differ%s from the vendor reference" % (
            version, ", ".join(differs), "s" if len(differs) == 1 else "")
        return j
    # a genuine vendor image: is it current?
    revoked = [c["name"] for c in comps if c["sha256"] in refs["revoked"]["sha256"]]
    reasons = []
    if trust_mod.version_below(version, refs["min_version"]):
        reasons.append("version %s is below the minimum %s" % (version, refs["min_version"]))
    if version in refs["revoked"]["versions"]:
        reasons.append("version %s is revoked" % version)
    if revoked:
        reasons.append("revoked component%s %s" % ("s" if len(revoked) > 1 else "",
                                                   ", ".join(revoked)))
    if reasons:
        run.fail(CHECK_CURRENT, "; ".join(reasons))
        j.level = levels.OUTDATED
        j.differs = revoked
        j.why = "vendor image %s is outdated: %s" % (version, "; ".join(reasons))
        return j
    run.ok(CHECK_CURRENT, "version %s >= minimum %s, nothing revoked" % (version, refs["min_version"]))
    j.level = levels.VERIFIED
    j.why = "vendor image %s, every component and PCR as the reference" % version
    return j


def _row(c, e, status):
    return {"name": (c or e)["name"], "version": c["version"] if c else None,
            "expected_version": e["version"] if e else None,
            "sha256": _hex(c["sha256"]) if c else None,
            "expected_sha256": _hex(e["sha256"]) if e else None, "status": status}


def _phone_events(logs, quoted):
    """(bundle (board, version, counter, digest, PCR) or None, components [{name, version, sha256,
    pcr}], PCRs closed by a separator, problem or None) from the replayed logs' tagged events.
    Only events of quoted PCRs count: an event in a PCR the quote leaves out was never compared
    with the TPM, so it is a claim, not evidence."""
    bundle = None
    comps = []
    separated = set()
    unquoted = None
    for name, log in logs:
        pos = log.header.banks.index(BANK)
        for e in log.events:
            if e.pcr not in quoted:
                if unquoted is None and e.type == EV_EVENT_TAG:
                    unquoted = (name, e.number, e.pcr)
                continue
            if e.type == EV_SEPARATOR:
                separated.add(e.pcr)
                continue
            if e.type != EV_EVENT_TAG:
                continue
            try:
                b = bundle_or_none(e.data, e.offset)
                c = None if b is not None else component_or_none(e.data, e.offset)
            except ParseError as err:
                return None, comps, separated, "%s log event %d: %s" % (name, e.number, err)
            if b is not None:
                if bundle is not None:
                    return bundle, comps, separated, "two bundle events (%s log event %d)" % (
                        name, e.number)
                if e.pcr in separated:
                    return None, comps, separated, "bundle event after the separator"
                bundle = (b[0], b[1], b[2], e.digest_values[pos], e.pcr)
            elif c is not None:
                comps.append({"name": c[0], "version": c[1], "sha256": e.digest_values[pos],
                              "pcr": e.pcr if e.pcr not in separated else -1})
    if bundle is None:
        if unquoted is not None:
            return None, comps, separated, ("no bundle event in a quoted PCR (%s log event %d is in"
                                            " PCR %d, which the quote does not cover)" % unquoted)
        return None, comps, separated, "no bundle event in the logs: no vendor image was measured"
    return bundle, comps, separated, None


def _selection_pcrs(sel):
    if len(sel) != 1 or sel[0][0] != C.TPM_ALG_SHA256:
        return None
    return sorted(sel[0][1])


def _describe_sel(sel):
    return "; ".join("alg 0x%04x PCR %s" % (alg, _pcr_list(p)) for alg, p in sel) or "nothing"


def _pcr_list(pcrs):
    return ", ".join(str(p) for p in pcrs)


def _short(b):
    h = b.hex()
    return h if len(h) <= 16 else h[:16] + "..."
