# SIP dialogs (RFC 3261 §12): the state two UAs share after an INVITE succeeds, and how
# requests inside it (ACK for 2xx, BYE, re-INVITE) are built (§12.2.1.1).

from firmware.sip.message import NameAddr, Request, SipUri, split_list


class Dialog:
    def __init__(self, call_id, local_tag, remote_tag, local_uri, remote_uri, remote_target,
                 route_set, local_seq, remote_seq, secure):
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri      # NameAddr text without tag (our From/To)
        self.remote_uri = remote_uri
        self.remote_target = remote_target  # SipUri from the peer's Contact
        self.route_set = route_set      # list of Route values, in the order to send
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.secure = secure

    @property
    def id(self):
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def from_uac(cls, request, response, local_tag):
        """§12.1.2: the UAC's dialog from its INVITE and the 2xx (or 1xx with a To tag)."""
        rr = []
        for h in response.get_all("Record-Route"):
            rr.extend(split_list(h, "Record-Route"))
        rr.reverse()   # §12.1.2: the UAC takes Record-Route in reverse order
        if response.to.tag is None:
            from firmware.sip.message import SipParseError

            raise SipParseError("2xx to INVITE without a To tag", field="To")
        return cls(request.call_id, local_tag, response.to.tag, _strip_tag(request.get("From")),
                   _strip_tag(response.get("To")), _contact_uri(response), rr, request.cseq.seq,
                   None, request.uri.scheme == "sips")

    @classmethod
    def from_uas(cls, request, local_tag):
        """§12.1.1: the UAS's dialog from the INVITE it answers with 2xx."""
        rr = []
        for h in request.get_all("Record-Route"):
            rr.extend(split_list(h, "Record-Route"))
        return cls(request.call_id, local_tag, request.from_.tag, _strip_tag(request.get("To")),
                   _strip_tag(request.get("From")), _contact_uri(request), rr, 0,
                   request.cseq.seq, request.uri.scheme == "sips")

    def create_request(self, method, cseq=None):
        """§12.2.1.1 (strict routing proxies are not supported: every route must be ;lr)."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        req = Request(method, self.remote_target.copy())
        for r in self.route_set:
            req.add("Route", r)
        req.add("Max-Forwards", "70")
        req.add("From", self.local_uri + ";tag=" + self.local_tag)
        req.add("To", self.remote_uri + ";tag=" + self.remote_tag)
        req.add("Call-ID", self.call_id)
        req.add("CSeq", "%d %s" % (cseq, method))
        return req

    def check_remote_cseq(self, request):
        """§12.2.2: a lower CSeq than the last one seen is out of order (answer 500)."""
        seq = request.cseq.seq
        if self.remote_seq is not None and seq < self.remote_seq and request.method != "ACK":
            return False
        if request.method != "ACK":
            self.remote_seq = seq
        return True


def _contact_uri(msg):
    contacts = msg.contacts()
    if len(contacts) != 1 or contacts[0].uri is None or not isinstance(contacts[0].uri, SipUri):
        from firmware.sip.message import SipParseError

        raise SipParseError("dialog needs exactly one SIP Contact", field="Contact")
    return contacts[0].uri


def _strip_tag(value):
    na = NameAddr.parse(value, "From/To")
    na.params = [(k, v) for k, v in na.params if k != "tag"]
    na.angle = True
    return str(na)
