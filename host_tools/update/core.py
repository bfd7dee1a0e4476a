"""Signing a new image's PCR policy for devices sealed with PolicyAuthorize, and the checks that
keep a bad signed policy from ever shipping (docs/sealing.md "Updates"):

1. offline: same board, PCR set and bank as the device's store; the store's objects really are
   sealed to PolicyAuthorize(this key, this policyRef); the approved digest recomputes from the
   new reference; the signature verifies; the version is not older than what the store has;
2. on a TPM: a copy of the device's TPM state is booted by replaying the new reference's events
   (real PCR_Extend commands) and the device's own release code must unseal with the new entry.
Only then is the entry written. A refused update leaves the device untouched.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from host_tools.provision import _fw
from host_tools.provision.core import POLICY_REF, signed_entry
from host_tools.provision.reference import Reference, replay
from host_tools.swtpm_proc import Swtpm
from host_tools.update import policy_file, policy_key


class UpdateRefused(RuntimeError):
    """The update would not unseal (or is not allowed); the message says why."""


def _object_policies(meta: dict[str, Any]) -> None:
    for o in meta["objects"]:
        want = _fw.object_policy(meta, o["pin"])
        got = _fw.parse_public(bytes.fromhex(o["public"]))["authPolicy"]
        if got != want:
            raise UpdateRefused(f"sealed object {o['name']} is not sealed to PolicyAuthorize with "
                                "this store's vendor key and policyRef")


def make_entry(meta: dict[str, Any], ref: Reference, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """Sign *ref*'s approved policy for the device whose store metadata is *meta*, after the
    offline checks."""
    if meta.get("policy") != _fw.POLICY_AUTHORIZED:
        raise UpdateRefused("the device is sealed with policy 'pcr' (to one image): an update "
                            "needs re-provisioning; provision with --policy authorized")
    if ref.board != meta["board"]:
        raise UpdateRefused(f"reference is for board {ref.board}, the device is {meta['board']}")
    if ref.pcrs != meta["pcrs"] or ref.bank != meta["pcr_bank"]:
        raise UpdateRefused(f"reference seals PCRs {ref.pcrs} ({ref.bank}); the device's policy "
                            f"uses {meta['pcrs']} ({meta['pcr_bank']})")
    a = meta["authorized"]
    if policy_key.tpm_public(key).hex() != a["key"]:
        raise UpdateRefused("the device's objects are sealed to another vendor policy key")
    if bytes.fromhex(a["policy_ref"]) != POLICY_REF:
        raise UpdateRefused("the device's policyRef is not this tool's")
    newest = max((s["anti_rollback"] for s in a["signed"]), default=0)
    if ref.anti_rollback < newest:
        raise UpdateRefused(f"anti-rollback version {ref.anti_rollback} is older than the "
                            f"device's newest signed policy ({newest}): that would be a downgrade")
    _object_policies(meta)
    entry = signed_entry(key, ref, bytes.fromhex(a["nv_name"]))
    approved = _fw.approved_policy(ref.expected, bytes.fromhex(a["nv_name"]), ref.anti_rollback, ref.bank)
    if approved.hex() != entry["approved"] or not policy_key.verify(
            key.public_key(), approved, POLICY_REF, bytes.fromhex(entry["r"]), bytes.fromhex(entry["s"])):
        raise UpdateRefused("the signed policy does not verify")  # cannot happen unless broken
    return entry


def with_entry(meta: dict[str, Any], entry: dict[str, Any], ref: Reference) -> dict[str, Any]:
    """The store metadata after the update: the new signed entry (replacing one of the same
    version), the new image as the reference the diagnosis compares against."""
    if entry["image_version"] != ref.image_version:
        raise UpdateRefused(f"entry for {entry['image_version']}, reference {ref.image_version}")
    new: dict[str, Any] = policy_file.with_entry(meta, entry)  # the device's own merge
    return new


def dry_run(tpm_state: Path, meta: dict[str, Any], ref: Reference) -> int:
    """Boot a COPY of the device's TPM with the new image's events and release with *meta*;
    returns the anti-rollback version that unsealed, or raises UpdateRefused."""
    predicted = replay(ref.events)
    for p in ref.pcrs:
        # a PCR no event extends stays at its reset value, zero (PCRs 0-15, TPM 2.0 Part 1 §17.1):
        # PCR 12 when nothing overrides the command line
        if predicted.get(p, bytes(32)) != ref.expected[p]:
            raise UpdateRefused(f"the reference's events do not replay to its predicted PCR {p}: "
                                "cannot prove the update unseals")
    with tempfile.TemporaryDirectory(prefix="update-dryrun-") as tmp:
        state = Path(tmp) / "tpm"
        shutil.copytree(tpm_state, state, ignore=shutil.ignore_patterns("*.sock", "*.pid", "*.lock"))
        with Swtpm(state, Path(tmp), server=True, tcp=True, extra_args=["--flags", "not-need-init"]) as sw:
            t = _fw.SwtpmTransport("127.0.0.1", sw.server_port)
            tpm = _fw.Tpm(t)
            try:
                tpm.startup(True)
                for e in ref.events:
                    tpm.pcr_extend(int(e["pcr"]), {"sha256": bytes.fromhex(e["digest"])})
                res = _fw.release(tpm, meta, measured=ref.components_meta())
                if not res.unsealed:
                    raise UpdateRefused(f"the new signed policy does not unseal on a copy of the "
                                        f"device's TPM: {res.reason}")
                version = res.version
                res.wipe()
                if version != ref.anti_rollback:
                    raise UpdateRefused(f"the copy unsealed with signed version {version}, not the "
                                        f"new {ref.anti_rollback}")
                tpm.shutdown(True)
            finally:
                t.close()
    return ref.anti_rollback
