# The jitter buffer: playout order, fixed delay, late/duplicate drops, losses across the wrap.
from firmware.media.jitter import JitterBuffer
from firmware.media.rtp import RtpPacket
from tests.unit.firmware.check import raises


def pkt(seq):
    return RtpPacket(payload_type=0, sequence_number=seq & 0xFFFF, timestamp=160 * seq, ssrc=1)


def drain(jb, now):
    out = []
    while True:
        p = jb.pop(now)
        if p is None:
            return out
        out.append(p.sequence_number)


def test_reorders_within_window_and_waits_for_delay():
    jb = JitterBuffer(capacity=8, delay_ms=40)
    for t, seq in ((0, 10), (5, 12), (8, 11), (30, 13)):
        assert jb.push(pkt(seq), t)
    assert jb.pop(39) is None  # first packet not yet held for 40 ms
    assert drain(jb, 50) == [10, 11, 12]  # 13 arrived at 30: due at 70
    assert drain(jb, 70) == [13]
    assert (jb.received, jb.played, jb.lost, jb.late, jb.duplicates) == (4, 4, 0, 0, 0)


def test_late_and_duplicate_are_dropped():
    jb = JitterBuffer(capacity=8, delay_ms=0)
    assert jb.push(pkt(5), 0)
    assert not jb.push(pkt(5), 1)
    assert drain(jb, 1) == [5]
    assert not jb.push(pkt(4), 2)  # already past it
    assert not jb.push(pkt(5), 2)  # played: now late, not duplicate
    assert (jb.late, jb.duplicates) == (2, 1)


def test_earlier_packet_before_playout_starts_the_stream():
    jb = JitterBuffer(capacity=8, delay_ms=20)
    jb.push(pkt(101), 0)
    jb.push(pkt(100), 3)
    assert drain(jb, 30) == [100, 101]


def test_gap_is_declared_lost_after_delay_across_wrap():
    jb = JitterBuffer(capacity=8, delay_ms=20)
    jb.push(pkt(65534), 0)
    jb.push(pkt(65535), 20)
    jb.push(pkt(65537), 60)  # seq 1 after the wrap; seq 0 never comes
    assert drain(jb, 40) == [65534, 65535]
    assert jb.pop(79) is None  # still waiting for seq 0
    assert drain(jb, 80) == [1]
    assert jb.lost == 1
    assert not jb.push(pkt(65536), 81)  # seq 0 shows up too late
    assert jb.late == 1


def test_overflow_drops_oldest():
    jb = JitterBuffer(capacity=3, delay_ms=100)
    for seq in range(5):
        jb.push(pkt(seq), seq)
    assert len(jb) == 3 and jb.overflow == 2
    assert drain(jb, 1000) == [2, 3, 4]
    raises(ValueError, JitterBuffer, 0)
