# SIP signalling for the phone, sans-I/O (RFC 3261 over TLS, SDP/SDES offer/answer):
#   message      parse/serialise SIP messages and header values (typed SipParseError -> 400)
#   digest       HTTP digest for SIP: MD5 and SHA-256 (RFC 2617, RFC 7616, RFC 8760)
#   transaction  client/server transactions and their timers (RFC 3261 §17, RFC 6026)
#   dialog       dialog state and in-dialog requests (§12)
#   ua           the user agent core: register, call, answer, hang up; events out
#   sdp          one secure audio stream: RTP/SAVP + a=crypto (RFC 4566, 3264, 4568, 7714)
#   io_cpython   the CPython TLS socket loop that drives the core (not used on MicroPython)
