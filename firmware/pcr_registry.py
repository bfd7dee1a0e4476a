# Which PCR the stage loader may measure the phone's components into (the board's "component
# register", board.json `component_pcr`), checked against the registers this board's boot chain
# already uses. Shared by the image builder (host_tools.image.build refuses such a board
# description) and the stage loader (refuses to measure into such a register). Sans-I/O,
# MicroPython-compatible.
#
# Owners: the TCG PC Client Platform Firmware Profile (PFP) §3.3.4 gives 0-7 to the firmware
# (OVMF here); the UAPI Linux TPM PCR Registry (uapi-group.org/specifications/specs/
# linux_tpm_pcr_registry) gives 8-15 to the OS boot chain; the PC Client Platform TPM Profile (PTP)
# §4.6 makes 16 and 23 resettable at locality 0 (anyone can reset them: never measure or seal
# there) and 17-22 the DRTM registers, extendable from localities 2-4 only (not from the OS).
# On this board 8 (boot loader) and 10 (IMA) are not measured into by the chain we ship, but they
# belong to parties that may run on it (a boot loader, the kernel's IMA): taken as used.
# Free for a vendor: 13 (systemd-stub system extensions: this image has none), 14 (shim's MOK lists:
# this board boots without shim) and 15 (systemd's cryptsetup / machine-id: no systemd here).
# docs/pcr-map.md "Component register" explains the choice for each board.

DEFAULT_COMPONENT_PCR = 14  # qemu-x86_64's register (docs/pcr-map.md): what a loader without the
#                             board setting in its initramfs measures into

OWNERS = {
    0: "OVMF: firmware code (PFP 3.3.4.1)",
    1: "OVMF: platform configuration, boot variables (PFP 3.3.4.2)",
    2: "OVMF: option ROM code (PFP 3.3.4.3)",
    3: "OVMF: option ROM configuration (PFP 3.3.4.4)",
    4: "OVMF: boot manager code, the UKI's Authenticode digest (PFP 3.3.4.5)",
    5: "OVMF: GPT and ExitBootServices (PFP 3.3.4.6)",
    6: "OVMF: platform manufacturer events (PFP 3.3.4.7)",
    7: "OVMF: Secure Boot policy (PFP 3.3.4.8)",
    8: "boot loader command line (UAPI PCR registry)",
    9: "Linux EFI stub: initrd and load options (UAPI PCR registry)",
    10: "Linux IMA (UAPI PCR registry)",
    11: "systemd-stub: UKI sections (UAPI PCR registry)",
    12: "systemd-stub: command-line overrides, credentials (UAPI PCR registry)",
    16: "debug: resettable at locality 0 (PC Client PTP 4.6)",
    17: "DRTM: not extendable from locality 0 (PC Client PTP 4.6)",
    18: "DRTM: not extendable from locality 0 (PC Client PTP 4.6)",
    19: "DRTM: not extendable from locality 0 (PC Client PTP 4.6)",
    20: "DRTM: not extendable from locality 0 (PC Client PTP 4.6)",
    21: "DRTM: not extendable from locality 0 (PC Client PTP 4.6)",
    22: "DRTM: not extendable from locality 0 (PC Client PTP 4.6)",
    23: "application support: resettable at locality 0 (PC Client PTP 4.6)",
}


class PcrCollisionError(ValueError):
    """The board's component register is out of range or belongs to another party."""

    def __init__(self, message, pcr=None, owner=None):
        self.pcr = pcr
        self.owner = owner
        super().__init__(message)


def owner(pcr):
    """Who else measures into `pcr` on this board (None: free for the phone's components)."""
    return OWNERS.get(pcr)


def check_component_pcr(pcr):
    """`pcr` if the stage loader may measure the components there; PcrCollisionError naming the
    PCR and its owner otherwise."""
    if isinstance(pcr, bool) or not isinstance(pcr, int) or not 0 <= pcr <= 23:
        raise PcrCollisionError("component register %r is not a PCR index 0..23" % (pcr,), pcr)
    who = OWNERS.get(pcr)
    if who is not None:
        raise PcrCollisionError("component register PCR %d collides with the boot chain: PCR %d "
                                "belongs to %s (free: 13, 14, 15)" % (pcr, pcr, who), pcr, who)
    return pcr


def parse_component_pcr(text):
    """The loader's setting file (a decimal PCR index and a newline) -> the PCR; raises
    PcrCollisionError when it is not a free register."""
    s = text.strip()
    if not s or len(s) > 2 or not all("0" <= ch <= "9" for ch in s):
        raise PcrCollisionError("component register setting %r is not a PCR index" % (s[:16],))
    return check_component_pcr(int(s))
