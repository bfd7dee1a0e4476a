"""The SIP user agent as a stateful target (firmware/sip/ua.py UserAgent over TLS framing): one
input is a session, a sequence of records
    op (1 byte) | dt (u16, ms the clock advances first) | length (u16) | data
with ops  r: receive(data)   t: handle_timer   R: register   u: unregister   c: call(data as URI)
          a: answer the ringing call   h: hang up the first live call   l: connection lost.
Randomness (tags, branches, Call-IDs, SDES keys) comes from a counter, so a session recorded from
a UA with the same counter (tests/fuzz/capture_sip.py, real Kamailio + baresip traffic) replays
into the same transactions and dialogs. UserAgent.receive and handle_timer document no exception
(bad input is answered 400/488 or dropped, and reported as a MessageRejected event)."""
import _common  # noqa: F401
import atheris
import runner

with atheris.instrument_imports(include=["firmware"]):
    import ua_session


def one_input(data):
    ua_session.replay(data)


if __name__ == "__main__":
    runner.main("ua", one_input, ())
