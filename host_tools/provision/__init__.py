"""Provisioning of sealed credentials (docs/sealing.md).

``python -m host_tools.provision --device NAME [--board qemu-x86_64] [--pin-file F] [--secrets F]``
starts the device's swtpm, creates the SRK, seals the SIP account (PolicyPCR over the board's PCR
set with the values PREDICTED in reference.json, or PolicyAuthorize to the vendor's policy key)
and a PIN-bound user secret, sets the dictionary-attack parameters, and writes the sealed store
into the device's data partition.
"""
