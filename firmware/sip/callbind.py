# The quote nonce that binds a phone's attestation evidence to one side of one SIP call (docs/
# attestation.md "Evidence in SIP"). Each side quotes with the nonce of what it sends (the caller
# for its INVITE, the callee for its 2xx); the receiver recomputes it from the message it got and
# its own identity, and appraisal refuses evidence whose quote does not carry it.
#
# nonce = SHA-256( "trusted-phone sip evidence v1" NUL
#                  || lp(role) || lp(Call-ID) || lp(From tag) || lp(To tag)
#                  || lp(sender AOR) || lp(receiver AOR)
#                  || for each of the sender's own a=crypto lines, in SDP order:
#                       u32(tag) || lp(suite) || lp(key || salt) )
# lp(x) = u16 big-endian length || UTF-8/raw bytes. Why each input is there:
# - role ("offer" for the INVITE, "answer" for the 2xx): the caller's evidence cannot be reflected
#   back as the callee's in the same dialog.
# - Call-ID and the tags (RFC 3261 §12: together they name the dialog; the To tag is empty for
#   the INVITE): evidence from another call fails. Call-ID and From tag are the caller's fresh
#   randomness; the To tag separates the 2xx of forked branches.
# - sender and receiver AOR: a malicious peer B that got A's evidence in an A->B call cannot pass
#   it on in a B->C call even when it copies Call-ID, tags and A's keys (all of which B saw):
#   C computes the receiver with its OWN AOR and the sender from the From/To the proxy
#   authenticated (Kamailio's auth_check ties From to the digest user), so A's evidence (made
#   for sender A, receiver B) does not match. The callee uses its own AOR, never the To header,
#   which the sender chooses freely (the proxy routes on the Request-URI).
# - the sender's own SDES keys (RFC 4568 inline key||salt; visible only inside TLS): the quote
#   vouches for the device that chose the keys protecting this call's media. A party on the
#   signalling path that swaps the a=crypto lines to put itself in the media path breaks the
#   binding; it cannot make a new quote. The nonce is a hash: it does not reveal the keys.
# What this cannot stop alone: the same INVITE replayed to the same callee (the callee has no
# round trip to add a challenge before the first message); the phone keeps the nonces it has
# accepted and refuses one seen again (firmware/phone/remote.py).

from firmware import compat
from firmware.sip.message import SipUri

LABEL = b"trusted-phone sip evidence v1\x00"
ROLES = ("offer", "answer")


def aor(uri):
    """The address-of-record "sip:user@host" of a SIP URI (text or SipUri): scheme sips folded
    into sip, host lowercased, port and parameters dropped (RFC 3261 §10.2.1: the AOR is
    user@domain)."""
    u = uri if isinstance(uri, SipUri) else SipUri.parse(uri, "AOR")
    if not u.user:
        raise ValueError("URI %s has no user part: not an address-of-record" % str(u)[:60])
    return "sip:%s@%s" % (u.user, u.host.lower())


def _lp(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > 0xFFFF:
        raise ValueError("call-binding input longer than 65535 octets")
    return len(data).to_bytes(2, "big") + data


def evidence_nonce(role, call_id, from_tag, to_tag, sender_aor, receiver_aor, cryptos):
    """32 octets. `cryptos`: the sender's own firmware.sip.sdp.Crypto objects, in the order of
    its SDP (all offered lines for the caller, the one answered line for the callee)."""
    if role not in ROLES:
        raise ValueError("role must be one of %s" % ", ".join(ROLES))
    parts = [LABEL, _lp(role), _lp(call_id), _lp(from_tag or ""), _lp(to_tag or ""),
             _lp(sender_aor), _lp(receiver_aor)]
    for c in cryptos:
        if c.key is None:
            continue    # a suite we do not know carries no key we could bind
        parts.append(c.tag.to_bytes(4, "big") + _lp(c.suite) + _lp(c.key + c.salt))
    return compat.sha256(b"".join(parts))


def sdp_cryptos(sdp_bytes):
    """The a=crypto lines of the first audio stream of an SDP body, parsed (the ones we cannot
    parse are skipped, as negotiation skips them: RFC 4568 §7.1.1)."""
    from firmware.sip import sdp as sdpmod

    desc = sdpmod.SessionDescription.parse(sdp_bytes)
    for m in desc.media:
        if m.media != "audio" or m.port == 0:
            continue
        out = []
        for v in m.attr("crypto"):
            try:
                out.append(sdpmod.Crypto.parse(v))
            except sdpmod.SdpError:
                continue
        return out
    return []
