# The root broker's `policy_install` (broker.py; docs/sealing.md "Signed policy over SMP"): the
# phone (uid 1000) received a signed PCR policy over SMP file management into its staging
# directory; root reads it once into memory (what it checks is what it writes), checks it against
# the sealed store on the data partition, with the TPM checking the signature, and writes the
# store with the entry added (firmware/secrets/policy_entry.py, store_write.py).

import os

from firmware import compat
from firmware.secrets import policy_entry
from firmware.update import staged

STAGED_NAME = "upload/policy.json"  # under the run dir: written by the phone, read by root


def install_staged(tpm, staged_path, length, sha_hex, data_dev=None):
    """-> the answer fields; PolicyRefused (or staged's UploadRefused) naming what was wrong."""
    if data_dev is None:
        data_dev = os.environ.get("PHONE_DATA_DEV", "")
    if not data_dev or data_dev.endswith("/missing"):
        raise policy_entry.PolicyRefused("no data partition: nothing to add the policy to")
    data = staged.read_staged(staged_path, length, policy_entry.MAX_FILE)
    if compat.sha256(data).hex() != sha_hex.lower():
        raise policy_entry.PolicyRefused("the staged policy file does not match the announced SHA-256")
    entry = policy_entry.install(data_dev, data, policy_entry.tpm_verify(tpm))
    from firmware.secrets import store
    signed = [s["anti_rollback"] for s in store.read_file(data_dev)["authorized"]["signed"]]
    return {"image_version": entry["image_version"], "anti_rollback": entry["anti_rollback"],
            "signed": signed}
