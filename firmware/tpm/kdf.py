# Key derivation functions of TPM 2.0 Part 1 §11.4.10.

from firmware import compat


def kdfa(hash_name, key, label, context_u, context_v, bits):
    """KDFa (Part 1 §11.4.10.2): SP 800-108 counter-mode KDF with HMAC.

    K(i) = HMAC(key, [i]32 || label || 0x00 || contextU || contextV || [bits]32); the label is
    used with its terminating zero octet, and excess leading bits of the result are masked off."""
    if isinstance(label, str):
        label = label.encode()
    out = bytearray()
    n = (bits + 7) // 8
    i = 1
    tail = label + b"\x00" + bytes(context_u) + bytes(context_v) + bits.to_bytes(4, "big")
    while len(out) < n:
        out.extend(compat.hmac(hash_name, key, i.to_bytes(4, "big") + tail))
        i += 1
    out = out[:n]
    if bits % 8:
        out[0] &= (1 << (bits % 8)) - 1
    return bytes(out)


def kdfe(hash_name, z, label, party_u, party_v, bits):
    """KDFe (Part 1 §11.4.10.3): SP 800-56A concatenation KDF.

    K(i) = H([i]32 || Z || label || 0x00 || partyUInfo || partyVInfo), where Z is the x-coordinate
    of the ECDH shared point and the party infos are the x-coordinates of the two public keys."""
    if isinstance(label, str):
        label = label.encode()
    out = bytearray()
    n = (bits + 7) // 8
    i = 1
    while len(out) < n:
        h = compat.new_hash(hash_name, i.to_bytes(4, "big"))
        h.update(bytes(z))
        h.update(label + b"\x00")
        h.update(bytes(party_u))
        h.update(bytes(party_v))
        out.extend(h.digest())
        i += 1
    out = out[:n]
    if bits % 8:
        out[0] &= (1 << (bits % 8)) - 1
    return bytes(out)
