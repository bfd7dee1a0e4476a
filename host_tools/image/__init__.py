"""Image builder for the trusted phone: ``python -m host_tools.image --board B --out DIR``.

Modules: ``bundle`` (signed phone bundle), ``userland`` + ``modules`` + ``initramfs``
(the initramfs), ``pe`` + ``uki`` (the unified kernel image), ``disk`` (GPT image),
``predict`` (PCR prediction), ``build`` (all of it).  Format: docs/image-format.md; PCRs:
docs/pcr-map.md.
"""
