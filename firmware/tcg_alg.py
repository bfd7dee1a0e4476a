# TPM_ALG_ID values of the hash algorithms (TPM 2.0 Part 2 §6.3, TCG Algorithm Registry), shared by
# the TPM client and the event-log code. Names are the ones tpm2-tools and the kernel use.

TPM_ALG_SHA1 = 0x0004
TPM_ALG_SHA256 = 0x000B
TPM_ALG_SHA384 = 0x000C
TPM_ALG_SHA512 = 0x000D
TPM_ALG_SM3_256 = 0x0012

HASH_ALG_NAMES = {
    TPM_ALG_SHA1: "sha1",
    TPM_ALG_SHA256: "sha256",
    TPM_ALG_SHA384: "sha384",
    TPM_ALG_SHA512: "sha512",
    TPM_ALG_SM3_256: "sm3_256",
}
HASH_ALG_IDS = {name: alg for alg, name in HASH_ALG_NAMES.items()}
HASH_SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64, "sm3_256": 32}
