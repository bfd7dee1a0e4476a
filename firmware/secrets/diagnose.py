# Why the TPM refused: which PCRs differ from the values the policy was computed from, and which
# components differ from the reference carried with the sealed blobs. Runs only AFTER the TPM has
# refused; it explains the refusal and never makes it (patching this out releases nothing).


def pcr_differences(expected, actual):
    """[{"pcr", "expected", "actual"}] for every PCR of `expected` whose actual value differs
    (actual None: the PCR could not be read)."""
    out = []
    for i in sorted(expected):
        a = actual.get(i) if actual is not None else None
        if a != expected[i]:
            out.append({"pcr": i, "expected": expected[i].hex(), "actual": a.hex() if a is not None else None})
    return out


def component_differences(reference, measured):
    """Compare the measured components (name, version, sha256 hex) with the reference, by name:
    [{"name", "status": differs|missing|extra|out-of-order, ...}]. `measured` None: unknown."""
    if measured is None:
        return []
    ref = dict((c["name"], c) for c in reference)
    seen = {}
    out = []
    for c in measured:
        name = c.get("name")
        r = ref.get(name)
        if r is None or name in seen:
            out.append({"name": name, "status": "extra", "actual_sha256": c.get("sha256")})
            continue
        seen[name] = True
        if c.get("sha256") != r["sha256"] or c.get("version") != r["version"]:
            out.append({"name": name, "status": "differs", "pcr": r.get("pcr"),
                        "expected_sha256": r["sha256"], "actual_sha256": c.get("sha256"),
                        "expected_version": r["version"], "actual_version": c.get("version")})
    for c in reference:
        if c["name"] not in seen:
            out.append({"name": c["name"], "status": "missing", "pcr": c.get("pcr"),
                        "expected_sha256": c["sha256"]})
    if not out:
        order = [c.get("name") for c in measured]
        if order != [c["name"] for c in reference]:
            out.append({"name": ",".join(order), "status": "out-of-order"})
    return out


# What a changed PCR means, where one cause explains it (docs/pcr-map.md).  PCR 12: systemd-stub
# measures a command line taken from the boot entry's LoadOptions (an override of the UKI's
# .cmdline, possible with Secure Boot off) and credentials from the ESP; the image has neither.
PCR_MEANING = {12: "kernel command line overridden (PCR 12)"}


def reason_text(tpm_refusal, pcrs_differ, components_differ):
    """One line for the console: the TPM's refusal first, then the PCRs and components."""
    parts = ["TPM refused the sealed credentials (%s)" % tpm_refusal]
    if pcrs_differ:
        parts.append("PCR %s differ%s from the sealed policy" % (
            ", ".join(str(d["pcr"]) for d in pcrs_differ), "s" if len(pcrs_differ) == 1 else ""))
    else:
        parts.append("the PCRs match the policy's recorded values (the blobs or their policy were changed)")
    for d in pcrs_differ:
        if d["pcr"] in PCR_MEANING:
            parts.append(PCR_MEANING[d["pcr"]])
    for d in components_differ:
        parts.append("component %s %s" % (d["name"], {"differs": "differs from the reference",
                                                     "missing": "is missing",
                                                     "extra": "is not in the reference",
                                                     "out-of-order": "measured out of order"}[d["status"]]))
    return "; ".join(parts)
