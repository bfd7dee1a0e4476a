# A/B slot record and MCUboot's test/confirm/revert (firmware/update/slots.py), sans-I/O, with an
# in-memory flash. Runs under pytest and micropython.

from firmware.errors import ParseError
from firmware.update import slots as S
from tests.unit.firmware.check import raises

H_A = bytes(range(32))
H_B = bytes(range(1, 33))


class MemSink:
    def __init__(self):
        self.data = b""

    def write(self, off, data):
        self.data = self.data[:off] + data + self.data[off + len(data):]

    def read(self, off, n):
        return self.data[off:off + n]

    def truncate(self, n):
        self.data = self.data[:n]


class MemFlash:
    capacity = 1 << 20

    def __init__(self):
        self.state = None
        self.sinks = {"a": MemSink(), "b": MemSink()}
        self.saves = 0

    def load_state(self):
        return self.state

    def save_state(self, data):
        self.state = data
        self.saves += 1

    def sink(self, bank):
        return self.sinks[bank]


def _with_b():
    flash = MemFlash()
    s = S.Slots(flash, S.initial("a", "1.0.0", 1, H_A))
    bank = s.begin_write()
    assert bank == "b" and s.rec["banks"]["b"]["state"] == S.WRITING
    s.written("b", {"bundle_version": "1.1.0", "anti_rollback_counter": 2}, H_B)
    return s


def test_images_of_a_factory_device():
    s = S.Slots(MemFlash(), S.initial("a", "1.0.0", 1, H_A))
    assert s.images() == [{"image": 0, "slot": 0, "version": "1.0.0", "hash": H_A,
                           "bootable": True, "confirmed": True, "active": True}]


def test_test_then_trial_then_confirm():
    s = _with_b()
    assert s.set_state(H_B, False) is None
    assert s.images()[1] == {"image": 0, "slot": 1, "version": "1.1.0", "hash": H_B,
                             "bootable": True, "pending": True}
    bank, rec, note = S.choose(s.rec)
    assert (bank, rec["trial"], rec["pending"], rec["confirmed"]) == ("b", "b", None, "a")
    assert note == "trial boot of bank b (version 1.1.0) (reverts unless the phone confirms it)"
    s.rec = rec
    assert s.images()[0]["version"] == "1.1.0" and "confirmed" not in s.images()[0]
    assert s.confirm_running() == 2
    assert s.rec["confirmed"] == "b" and s.rec["trial"] is None
    assert s.confirm_running() is None  # nothing on trial any more: no second floor raise
    bank, rec, note = S.choose(s.rec)
    assert bank == "b" and note is None


def test_unconfirmed_trial_reverts_and_says_why():
    s = _with_b()
    s.set_state(H_B, False)
    _, rec, _ = S.choose(s.rec)
    bank, rec, note = S.choose(rec)
    assert bank == "a" and rec["trial"] is None and rec["running"] == "a"
    assert rec["last"] == note == ("reverted to bank a (version 1.0.0): trial image bank b "
                                   "(version 1.1.0) was never confirmed")


def test_permanent_skips_the_trial():
    s = _with_b()
    s.set_state(H_B, True)
    bank, rec, note = S.choose(s.rec)
    assert bank == "b" and rec["confirmed"] == "b" and rec["trial"] is None
    assert note == "booting bank b (version 1.1.0) permanently"


def test_refusals():
    s = _with_b()
    assert "no bootable image has hash" in raises(S.SlotError, s.set_state, bytes(32), False).reason
    assert raises(S.SlotError, s.set_state, H_A, False).rc == S.IMG_IMAGE_ALREADY_PENDING
    assert raises(S.SlotError, s.erase, 0).rc == S.IMG_INVALID_SLOT
    assert raises(S.SlotError, s.logical, 2).rc == S.IMG_INVALID_SLOT
    s.set_state(H_B, False)
    _, s.rec, _ = S.choose(s.rec)
    e = raises(S.SlotError, s.begin_write)
    assert e.rc == S.IMG_NO_FREE_SLOT and "bank a is the fallback" in e.reason
    assert raises(S.SlotError, s.erase, 1).rc == S.IMG_NO_FREE_SLOT


def test_a_bank_being_written_is_never_booted():
    flash = MemFlash()
    s = S.Slots(flash, S.initial("a", "1.0.0", 1, H_A))
    s.begin_write()
    s.rec["pending"] = "b"  # even a record that says so (a crash mid-upload, a bad edit)
    bank, rec, _ = S.choose(s.rec)
    assert bank == "a"


def test_record_round_trip_and_parse_refusals():
    s = _with_b()
    assert S.parse(S.encode(s.rec)) == s.rec
    for bad, words in [(b"{", "not JSON"), (b'{"format": 2}', "format is not 1"),
                       (b'{"format": 1, "banks": {"a": {"state": "empty"}}}', "banks a and b")]:
        assert words in str(raises(ParseError, S.parse, bad))
    rec = S.initial()
    rec["trial"] = "c"
    assert "trial is not a bank or null" in str(raises(ParseError, S.parse, S.encode(rec)))
