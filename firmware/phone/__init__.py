# The phone application's call layer: glue between the SIP user agent (firmware.sip) and the media
# plane (firmware.media). Sans-I/O except io_cpython.py.
#   call        CallMedia: one call's media (G.711 <-> RTP <-> SRTP, jitter buffer, SRTCP reports)
#   app         PhoneApp: a UserAgent plus a CallMedia per call; the console's API
#   tone        sine generator and Goertzel detector (end-to-end audio checks)
#   io_cpython  PhoneIo (TLS flow + RTP/RTCP sockets) and PhoneLoop (select loop), CPython only
#
# Console API (firmware.phone.app.PhoneApp; `now` is ms on the monotonic clock, default
# firmware.compat.monotonic_ms(); errors the user caused raise ValueError with a message to show):
#   app.register(now=None)            send REGISTER (digest challenge answered by the UA)
#   app.call(uri, now=None) -> str    "call URI": start a call, returns its Call-ID
#   app.answer(now=None) -> str       "answer": answer the ringing incoming call
#   app.hangup(now=None)              "hangup": BYE, CANCEL or decline, whichever applies
#   app.status() -> dict              put into the console's status JSON, e.g.
#     {"registered": true, "aor": "sip:alice@example.org", "expires": 600, "transport": "TLS",
#      "tls_verified": true, "registration_error": null (or e.g. "403 Forbidden"),
#      "call": {"call_id": "...", "state": "connected", "direction": "out",
#               "peer": "sip:bob@example.org", "suite": "AEAD_AES_128_GCM", "security": "locked",
#               "why": "", "codec": "PCMU", "media": {... counters, "dropped": {...}}} or null,
#      "last_call": {"call_id", "status", "reason", "by", "media"} or null}
#     call.state: "calling", "early" (ringing), "incoming", "connected", "cancelling";
#     security: "locked" (SRTP media + TLS signalling + verified server certificate) or
#     "unlocked" with `why` saying what is missing.
#   app.next_event() -> event or None firmware.sip.ua events (IncomingCall, CallAnswered, ...)
#   app.log_lines                     the last log lines (drops of bad media are logged here)
#
# On the QEMU image (CPython), firmware.phone.io_cpython wires it up:
#   p = PhoneIo.open(UaConfig(user, domain, password, "TLS"), server, port, cafile)
#   loop = PhoneLoop(p); loop.add_reader(console_input, on_readable)  # one select() for both
#   p.app.register(); loop.run_forever()
# PhoneIo.open(..., media_host=ADVERTISED, media_bind=ADDR, media_port=P or media_socks=(rtp, rtcp),
# address_map={...}) serves phones behind a NAT (firmware.console.phone on the QEMU board).
# PhoneIo verifies the server certificate and name (ssl raises otherwise, so the phone never
# runs on an unverified flow), binds RTP/RTCP on an even/odd UDP port pair, and reconnects with
# backoff (and registers again) when the TLS flow breaks.
