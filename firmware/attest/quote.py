# The device's side of a quote (runs in the TPM broker, root): TPM2_Quote (TPM 2.0 Part 3 §18.4)
# of the sha256 PCRs below with the attestation key that provisioning made persistent, plus the
# PCR values and the AK's public key and certificate. The AK handle and certificate come from the
# "attestation" record provisioning wrote into the data partition's store (firmware/secrets/store.py).
# Whether the answer can be trusted is for the verifier (firmware/attest/appraise.py): the quote is
# signed by a key the device CA certified only after MakeCredential/ActivateCredential.

from firmware.attest import pem
from firmware.attest.errors import EvidenceError
from firmware.pcr_registry import DEFAULT_COMPONENT_PCR
from firmware.tpm import constants as C
from firmware.tpm.marshal import Writer
from firmware.tpm.structures import PCR_SELECTION, SIGNATURE

PCR_BANK = "sha256"
# Firmware 0-7, boot loader/kernel 8-9, UKI sections 11, command-line overrides 12 (docs/pcr-map.md)
# and the board's component register (board.json component_pcr, firmware/pcr_registry.py; 14 on
# qemu-x86_64), where the stage loader measures the bundle. 10 (IMA) is no stage of this boot chain.
BOOT_PCRS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12)


def pcrs_to_quote(component_pcr=DEFAULT_COMPONENT_PCR):
    return tuple(sorted(set(BOOT_PCRS + (component_pcr,))))


QUOTE_PCRS = pcrs_to_quote()  # with the default register (qemu-x86_64's)
NONCE_MIN, NONCE_MAX = 1, 64  # TPM2B_DATA qualifyingData: at most sizeof(TPMT_HA) = 66; we take 64
# What provisioning gives the AK (firmware/tpm/public.py AK_ATTRIBUTES): a restricted signing key
# that never leaves this TPM; a key without these bits could sign a forged TPMS_ATTEST.
AK_REQUIRED = (C.TPMA_OBJECT_FIXEDTPM | C.TPMA_OBJECT_FIXEDPARENT | C.TPMA_OBJECT_SENSITIVEDATAORIGIN
               | C.TPMA_OBJECT_RESTRICTED | C.TPMA_OBJECT_SIGN_ENCRYPT)


def selection(pcrs=QUOTE_PCRS):
    return [(C.TPM_ALG_SHA256, list(pcrs))]


def attestation_record(meta):
    """The store's "attestation" record (validated by store.validate) or EvidenceError."""
    rec = meta.get("attestation") if isinstance(meta, dict) else None
    if not isinstance(rec, dict):
        raise EvidenceError("this device has no attestation key: provision it "
                            "(python -m host_tools.provision)")
    return rec


def ak_public(tpm, handle):
    """(PEM SubjectPublicKeyInfo, parsed TPMT_PUBLIC) of the AK at `handle`, after checking it is
    what provisioning made: ECC P-256, restricted signing, ECDSA-SHA256, fixedTPM."""
    pub = tpm.read_public(handle)["parsed"]
    if pub["type"] != C.TPM_ALG_ECC or pub["curveID"] != C.TPM_ECC_NIST_P256:
        raise EvidenceError("the key at 0x%08x is not an ECC P-256 key" % handle)
    if pub["objectAttributes"] & AK_REQUIRED != AK_REQUIRED or pub["objectAttributes"] & C.TPMA_OBJECT_DECRYPT:
        raise EvidenceError("the key at 0x%08x is not a restricted signing key (attributes 0x%08x)"
                            % (handle, pub["objectAttributes"]))
    if pub["scheme"] != (C.TPM_ALG_ECDSA, C.TPM_ALG_SHA256):
        raise EvidenceError("the key at 0x%08x does not sign with ECDSA-SHA256" % handle)
    return pem.p256_public_pem(pub["x"], pub["y"]), pub


def quote(tpm, record, nonce, component_pcr=DEFAULT_COMPONENT_PCR):
    """-> {"quote", "signature" (base64), "pcr_bank", "pcrs" {"N": hex}, "ak_pub", "ak_cert"}.
    `component_pcr`: the register the stage loader measured the bundle into (its board's)."""
    nonce = bytes(nonce)
    if not NONCE_MIN <= len(nonce) <= NONCE_MAX:
        raise EvidenceError("nonce of %d bytes (%d..%d)" % (len(nonce), NONCE_MIN, NONCE_MAX))
    pcrs = pcrs_to_quote(component_pcr)
    handle = record["ak_handle"]
    ak_pem, _ = ak_public(tpm, handle)
    attest, sig = tpm.quote(handle, nonce, selection(pcrs))
    values = tpm.pcr_read_all(PCR_BANK, list(pcrs))
    w = Writer()
    SIGNATURE.write(w, sig)
    return {"quote": pem.b64encode(attest), "signature": pem.b64encode(w.bytes()),
            "pcr_bank": PCR_BANK, "pcrs": dict((str(i), values[i].hex()) for i in pcrs),
            "ak_pub": ak_pem, "ak_cert": record["ak_cert"]}


def marshal_selection():
    w = Writer()
    PCR_SELECTION.write(w, selection())
    return w.bytes()
