# A small TPM 2.0 command layer (no TSS): marshalling, command descriptions, sessions, policy
# digests and transports. The core is sans-I/O: `Tpm` builds command bytes and parses response
# bytes; a transport only moves bytes (`send(cmd) -> rsp`).
