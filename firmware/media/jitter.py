# A small fixed-delay jitter buffer (sans-I/O): packets go in with their arrival time, come out in
# sequence-number order once they have waited `delay_ms`. Time is always passed in.
#
# - Reordering is absorbed within `capacity` packets and `delay_ms` of waiting.
# - A packet older than the one last played ("late") or already held ("duplicate") is dropped.
# - A gap still open when the packet after it is due is declared lost and skipped.
# Sequence numbers are extended across the 16-bit wrap (RFC 3550 Appendix A.1 style).


class JitterBuffer:
    def __init__(self, capacity=16, delay_ms=60):
        if capacity < 1:
            raise ValueError("jitter buffer capacity must be at least 1")
        self.capacity = capacity
        self.delay_ms = delay_ms
        self._held = {}  # extended sequence number -> (arrival ms, packet)
        self._next = None  # extended sequence number to play next
        self._highest = None
        self.received = 0
        self.played = 0
        self.late = 0
        self.duplicates = 0
        self.lost = 0
        self.overflow = 0

    def __len__(self):
        return len(self._held)

    def _extend(self, seq):
        if self._highest is None:
            return seq
        delta = (seq - self._highest) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        return self._highest + delta

    def push(self, packet, now_ms):
        """Offer a packet (anything with .sequence_number). Returns False if it was dropped."""
        ext = self._extend(packet.sequence_number)
        if self._next is not None and ext < self._next:
            if self.played or self.lost or self.overflow:
                self.late += 1
                return False
            # Nothing played yet: an earlier packet that arrived second still starts the stream.
            self._next = ext
        if ext in self._held:
            self.duplicates += 1
            return False
        self.received += 1
        if self._next is None:
            self._next = ext
        if self._highest is None or ext > self._highest:
            self._highest = ext
        self._held[ext] = (now_ms, packet)
        # Full: drop the oldest held packet rather than grow (counted in `overflow`); a gap
        # before it is given up as lost.
        while len(self._held) > self.capacity:
            first = min(self._held)
            if first > self._next:
                self.lost += first - self._next
            del self._held[first]
            self._next = first + 1
            self.overflow += 1
        return True

    def pop(self, now_ms):
        """The next packet due for playout at `now_ms`, or None."""
        if not self._held:
            return None
        entry = self._held.get(self._next)
        if entry is not None:
            if now_ms - entry[0] < self.delay_ms:
                return None
            del self._held[self._next]
            self._next += 1
            self.played += 1
            return entry[1]
        # A gap: wait until the earliest held packet is due, then declare the gap lost.
        first = min(self._held)
        arrival, packet = self._held[first]
        if now_ms - arrival < self.delay_ms:
            return None
        self.lost += first - self._next
        del self._held[first]
        self._next = first + 1
        self.played += 1
        return packet
