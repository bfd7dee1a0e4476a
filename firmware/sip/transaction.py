# SIP transactions (RFC 3261 §17, with the RFC 6026 "Accepted" states for 2xx to INVITE).
# Sans-I/O: a transaction is fed responses/requests and `now` (milliseconds) and leaves bytes in
# `outgoing` and events in `events`; `next_timer()` says when to call `handle_timer(now)` next.
# Over a reliable transport (TLS/TCP) the retransmission timers A, E, G are not used and the
# wait timers D, I, J, K are zero (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2).

T1 = 500     # §17.1.1.1 RTT estimate (ms)
T2 = 4000    # maximum retransmit interval for non-INVITE requests and INVITE responses
T4 = 5000    # maximum time a message stays in the network

# Events a transaction reports to its user (the UA core):
#   ("response", Response)   a response to pass up (client transactions)
#   ("timeout", name)        timer B/F (client) or H/L (server) fired: the peer did not answer
#   ("terminated", None)     the transaction is finished and may be dropped


class _Base:
    def __init__(self, reliable, now, t1):
        self.reliable = reliable
        self.t1 = t1
        self.timers = {}       # name -> deadline (ms)
        self.intervals = {}    # retransmission timers' current interval
        self.outgoing = []
        self.events = []
        self.state = None
        self.created = now

    def next_timer(self):
        best = None
        for t in self.timers.values():
            if best is None or t < best:
                best = t
        return best

    def _start(self, name, now, delay):
        self.timers[name] = now + delay

    def _stop(self, *names):
        for n in names:
            if n in self.timers:
                del self.timers[n]

    def _terminate(self):
        self.state = "terminated"
        self.timers = {}
        self.events.append(("terminated", None))

    def handle_timer(self, now):
        due = [(t, n) for n, t in self.timers.items() if t <= now]
        due.sort()
        for _, name in due:
            if name in self.timers and self.timers[name] <= now and self.state != "terminated":
                del self.timers[name]
                self._fire(name, now)

    @property
    def terminated(self):
        return self.state == "terminated"


class ClientTransaction(_Base):
    """§17.1.1 (INVITE) and §17.1.2 (non-INVITE) client transaction for one request."""

    def __init__(self, request, reliable, now, t1=T1):
        _Base.__init__(self, reliable, now, t1)
        self.request = request
        self.invite = request.method == "INVITE"
        self.branch = request.via.branch
        self.method = request.method
        self.data = request.serialize()
        self.ack = None
        self.last_response = None
        self.outgoing.append(self.data)
        self.state = "calling" if self.invite else "trying"
        if not reliable:
            name = "A" if self.invite else "E"
            self.intervals[name] = t1
            self._start(name, now, t1)
        self._start("B" if self.invite else "F", now, 64 * t1)

    def matches(self, response):
        """§17.1.3: top Via branch and CSeq method identify the client transaction."""
        try:
            return response.via.branch == self.branch and response.cseq.method == self.method
        except ValueError:
            return False

    def receive_response(self, resp, now):
        code = resp.status
        self.last_response = resp
        if self.invite:
            self._invite_response(resp, code, now)
        else:
            self._non_invite_response(resp, code, now)

    def _invite_response(self, resp, code, now):
        st = self.state
        if st in ("calling", "proceeding"):
            if code < 200:
                self.state = "proceeding"
                self._stop("A", "B")
                self.events.append(("response", resp))
            elif code < 300:
                # RFC 6026 §8.4: Accepted; later 2xx retransmissions go to the TU (it re-ACKs).
                self.state = "accepted"
                self._stop("A", "B")
                self._start("M", now, 64 * self.t1)
                self.events.append(("response", resp))
            else:
                self.state = "completed"
                self._stop("A", "B")
                self.ack = self._make_ack(resp)
                self.outgoing.append(self.ack)
                self._start("D", now, 0 if self.reliable else 32000)
                self.events.append(("response", resp))
                if self.reliable:
                    self.handle_timer(now)
        elif st == "accepted":
            if 200 <= code < 300:
                self.events.append(("response", resp))
        elif st == "completed":
            if code >= 300 and self.ack is not None:
                self.outgoing.append(self.ack)   # §17.1.1.2: the final response was retransmitted

    def _make_ack(self, resp):
        # §17.1.1.3: ACK for a non-2xx final response, same branch, To with the response's tag.
        from firmware.sip.message import Request

        req = self.request
        ack = Request("ACK", req.uri)
        ack.add("Via", req.get_all("Via")[0])
        for r in req.get_all("Route"):
            ack.add("Route", r)
        ack.add("Max-Forwards", "70")
        ack.add("From", req.get("From"))
        ack.add("To", resp.get("To"))
        ack.add("Call-ID", req.call_id)
        ack.add("CSeq", "%d ACK" % req.cseq.seq)
        return ack.serialize()

    def _non_invite_response(self, resp, code, now):
        st = self.state
        if st in ("trying", "proceeding"):
            if code < 200:
                self.state = "proceeding"
                self.events.append(("response", resp))
            else:
                self.state = "completed"
                self._stop("E", "F")
                self._start("K", now, 0 if self.reliable else T4)
                self.events.append(("response", resp))
                if self.reliable:
                    self.handle_timer(now)

    def _fire(self, name, now):
        if name in ("A", "E"):
            self.outgoing.append(self.data)
            if name == "A":
                iv = self.intervals[name] * 2
            elif self.state == "proceeding":
                iv = T2
            else:
                iv = min(self.intervals[name] * 2, T2)
            self.intervals[name] = iv
            self._start(name, now, iv)
        elif name in ("B", "F"):
            self.events.append(("timeout", name))
            self._terminate()
        elif name in ("D", "K", "M"):
            self._terminate()


class ServerTransaction(_Base):
    """§17.2.1 (INVITE) and §17.2.2 (non-INVITE) server transaction for one received request."""

    def __init__(self, request, reliable, now, t1=T1):
        _Base.__init__(self, reliable, now, t1)
        self.request = request
        self.invite = request.method == "INVITE"
        self.branch = request.via.branch
        self.sent_by = (request.via.host.lower(), request.via.port)
        self.method = request.method
        self.last_response = None
        self.state = "proceeding" if self.invite else "trying"
        self.acked = False

    def matches(self, request):
        """§17.2.3: branch, sent-by and method (an ACK matches its INVITE)."""
        try:
            via = request.via
        except ValueError:
            return False
        method = request.method
        if method == "ACK":
            method = "INVITE"
        return (via.branch == self.branch and (via.host.lower(), via.port) == self.sent_by
                and method == self.method)

    def respond(self, resp, now):
        data = resp.serialize()
        code = resp.status
        if self.state in ("completed", "confirmed", "terminated") or (
                self.state == "accepted" and code < 300):
            return
        self.last_response = data
        self.outgoing.append(data)
        if code < 200:
            if not self.invite:
                self.state = "proceeding"
            return
        if self.invite:
            if code < 300:
                # RFC 6026 §8.7: Accepted. The 2xx is retransmitted (§13.3.1.4) until the ACK.
                self.state = "accepted"
                if not self.reliable:
                    self.intervals["G2"] = self.t1
                    self._start("G2", now, self.t1)
                self._start("L", now, 64 * self.t1)
            else:
                self.state = "completed"
                if not self.reliable:
                    self.intervals["G"] = self.t1
                    self._start("G", now, self.t1)
                self._start("H", now, 64 * self.t1)
        else:
            self.state = "completed"
            self._start("J", now, 0 if self.reliable else 64 * self.t1)
            if self.reliable:
                self.handle_timer(now)

    def receive_request(self, req, now):
        """A retransmission of the request, or the ACK for a final INVITE response."""
        if req.method == "ACK":
            if self.state == "completed":
                self.state = "confirmed"
                self._stop("G", "H")
                self._start("I", now, 0 if self.reliable else T4)
                if self.reliable:
                    self.handle_timer(now)
            elif self.state == "accepted":
                self.ack_received(now)
            return
        if self.last_response is not None and self.state in ("proceeding", "trying", "completed"):
            self.outgoing.append(self.last_response)

    def ack_received(self, now):
        """The UA saw the ACK for its 2xx (a new transaction per §17.1.1.3); stop retransmitting."""
        self.acked = True
        self._stop("G2")

    def _fire(self, name, now):
        if name in ("G", "G2"):
            self.outgoing.append(self.last_response)
            iv = min(self.intervals[name] * 2, T2)
            self.intervals[name] = iv
            self._start(name, now, iv)
        elif name == "H":
            self.events.append(("timeout", "H"))
            self._terminate()
        elif name == "L":
            if not self.acked:
                # §13.3.1.4: no ACK within 64*T1 - the UAS should end the session
                self.events.append(("timeout", "L"))
            self._terminate()
        elif name in ("I", "J"):
            self._terminate()
