# TPMS_ATTEST (TPM 2.0 Part 2 §10.12.12) as produced by TPM2_Quote: parse first; whether it can be
# trusted is decided by verifying its signature with the attestation key and comparing the
# nonce (extraData) and PCR digest, which this module does not do by itself.

from firmware.errors import ParseError
from firmware.tpm import constants as C
from firmware.tpm.marshal import Reader
from firmware.tpm.structures import PCR_SELECTION


def parse_attest(data):
    r = Reader(data)
    magic = r.u32("magic")
    if magic != C.TPM_GENERATED_VALUE:
        raise ParseError("magic 0x%08x is not TPM_GENERATED_VALUE" % magic, offset=0, field="magic")
    out = {"magic": magic, "type": r.u16("type")}
    out["qualifiedSigner"] = r.tpm2b("qualifiedSigner", 66)
    out["extraData"] = r.tpm2b("extraData", 64)
    # TPMS_CLOCK_INFO (Part 2 §10.11.1)
    out["clock"] = r.u64("clockInfo.clock")
    out["resetCount"] = r.u32("clockInfo.resetCount")
    out["restartCount"] = r.u32("clockInfo.restartCount")
    out["safe"] = r.u8("clockInfo.safe")
    out["firmwareVersion"] = r.u64("firmwareVersion")
    if out["type"] == C.TPM_ST_ATTEST_QUOTE:
        # TPMS_QUOTE_INFO (Part 2 §10.12.4)
        out["pcrSelect"] = PCR_SELECTION.read(r, "attested.quote.pcrSelect")
        out["pcrDigest"] = r.tpm2b("attested.quote.pcrDigest", 64)
    else:
        raise ParseError("attestation type 0x%04x is not a quote" % out["type"], offset=4, field="type")
    r.done("TPMS_ATTEST")
    return out
