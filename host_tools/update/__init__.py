"""Vendor-signed PCR policies (TPM2_PolicyAuthorize) for updates without re-provisioning.

``python -m host_tools.update --device NAME --reference NEW/reference.json`` signs the new image's
approved policy, proves on a copy of the device's TPM that it unseals, and only then writes it
into the device's sealed store (docs/sealing.md "Updates").
"""
