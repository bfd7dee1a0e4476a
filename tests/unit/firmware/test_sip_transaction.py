# firmware.sip.transaction timers (RFC 3261 §17) driven by explicit `now` values (ms).
# Runs under pytest and MicroPython.
from firmware.sip.message import Response, parse_message
from firmware.sip.transaction import T1, T2, T4, ClientTransaction, ServerTransaction


def _req(method="OPTIONS", branch="z9hG4bKabc"):
    return parse_message((
        "%s sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=%s\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
        "Call-ID: tx1\r\nCSeq: 1 %s\r\nContent-Length: 0\r\n\r\n" % (method, branch, method)).encode())


def _resp(req, status, tag="2"):
    r = Response(status, "X")
    r.add("Via", req.get("Via"))
    r.add("From", req.get("From"))
    r.add("To", req.get("To") + ";tag=" + tag)
    r.add("Call-ID", req.call_id)
    r.add("CSeq", req.get("CSeq"))
    return parse_message(r.serialize())


def _run(tx, until):
    """Fire timers up to `until`; returns the times at which something was (re)sent."""
    sent = []
    while True:
        t = tx.next_timer()
        if t is None or t > until:
            return sent
        n = len(tx.outgoing)
        tx.handle_timer(t)
        if len(tx.outgoing) > n:
            sent.append(t)


def test_non_invite_client_timer_e_backoff_and_f_timeout():
    # §17.1.2.2: E doubles from T1 up to T2; F fires at 64*T1
    tx = ClientTransaction(_req(), False, 0)
    assert len(tx.outgoing) == 1
    sent = _run(tx, 64 * T1)
    assert sent == [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    assert tx.terminated and ("timeout", "F") in tx.events


def test_non_invite_client_proceeding_uses_t2_then_k():
    req = _req()
    tx = ClientTransaction(req, False, 0)
    _run(tx, 600)
    tx.receive_response(_resp(req, 100), 700)
    assert tx.state == "proceeding"
    assert _run(tx, 6000) == [1500, 5500]      # next E at 1500 (scheduled before), then every T2
    tx.receive_response(_resp(req, 200), 6000)
    assert tx.state == "completed" and tx.next_timer() == 6000 + T4   # timer K
    tx.handle_timer(6000 + T4)
    assert tx.terminated


def test_reliable_client_has_no_retransmissions_and_zero_k():
    req = _req()
    tx = ClientTransaction(req, True, 0)
    assert tx.next_timer() == 64 * T1 and _run(tx, 10000) == []
    tx.receive_response(_resp(req, 200), 100)
    assert tx.terminated and tx.events[0][1].status == 200


def test_invite_client_timer_a_b_and_non_2xx_ack():
    req = _req("INVITE")
    tx = ClientTransaction(req, False, 0)
    assert _run(tx, 4000) == [500, 1500, 3500]       # §17.1.1.2 A doubles without cap
    tx.receive_response(_resp(req, 486), 4000)
    assert tx.state == "completed"
    ack = parse_message(tx.outgoing[-1])
    assert ack.method == "ACK" and ack.via.branch == "z9hG4bKabc" and ack.to.tag == "2"
    assert ack.cseq.seq == 1 and ack.cseq.method == "ACK"
    n = len(tx.outgoing)
    tx.receive_response(_resp(req, 486), 4100)        # retransmitted final -> ACK again
    assert len(tx.outgoing) == n + 1
    assert tx.next_timer() == 4000 + 32000           # timer D
    tx.handle_timer(36000)
    assert tx.terminated

    tx = ClientTransaction(_req("INVITE", "z9hG4bKb"), False, 0)
    _run(tx, 64 * T1)
    assert ("timeout", "B") in tx.events and tx.terminated


def test_invite_client_2xx_accepted_state_passes_retransmissions_up():
    req = _req("INVITE")
    tx = ClientTransaction(req, True, 0)
    tx.receive_response(_resp(req, 180), 10)
    tx.receive_response(_resp(req, 200), 20)
    tx.receive_response(_resp(req, 200), 30)
    assert [e[1].status for e in tx.events] == [180, 200, 200]
    assert tx.state == "accepted" and tx.next_timer() == 20 + 64 * T1   # RFC 6026 timer M


def test_invite_server_g_h_and_i():
    req = _req("INVITE")
    tx = ServerTransaction(req, False, 0)
    tx.respond(_resp(req, 180), 0)
    tx.receive_request(req, 100)          # retransmitted INVITE -> last provisional again
    assert len(tx.outgoing) == 2
    tx.respond(_resp(req, 486), 200)
    sent = _run(tx, 200 + 64 * T1)
    # §17.2.1: G from T1 doubling to T2, H at 64*T1
    assert sent[:5] == [700, 1700, 3700, 7700, 11700]
    assert ("timeout", "H") in tx.events and tx.terminated

    tx = ServerTransaction(req, False, 0)
    tx.respond(_resp(req, 486), 0)
    ack = parse_message(tx.outgoing[0].replace(b"SIP/2.0 486 X", b"ACK sip:bob@example.com SIP/2.0")
                        .replace(b"CSeq: 1 INVITE", b"CSeq: 1 ACK"))
    assert tx.matches(ack)
    tx.receive_request(ack, 600)
    assert tx.state == "confirmed" and tx.next_timer() == 600 + T4   # timer I
    tx.handle_timer(600 + T4)
    assert tx.terminated


def test_invite_server_2xx_retransmitted_until_ack_or_timer_l():
    req = _req("INVITE")
    tx = ServerTransaction(req, False, 0)
    tx.respond(_resp(req, 200), 0)
    assert _run(tx, 4000) == [500, 1500, 3500]
    tx.ack_received(4000)
    assert _run(tx, 20000) == []
    tx.handle_timer(64 * T1)
    assert tx.terminated and ("timeout", "L") not in tx.events

    tx = ServerTransaction(req, True, 0)
    tx.respond(_resp(req, 200), 0)
    assert tx.next_timer() == 64 * T1
    tx.handle_timer(64 * T1)
    assert ("timeout", "L") in tx.events     # no ACK at all: the UA must BYE


def test_non_invite_server_timer_j():
    req = _req()
    tx = ServerTransaction(req, False, 0)
    tx.respond(_resp(req, 200), 0)
    tx.receive_request(req, 10)
    assert len(tx.outgoing) == 2 and tx.next_timer() == 64 * T1
    tx = ServerTransaction(req, True, 0)
    tx.respond(_resp(req, 200), 0)
    assert tx.terminated                     # J = 0 on reliable transports
    assert T2 == 4000
