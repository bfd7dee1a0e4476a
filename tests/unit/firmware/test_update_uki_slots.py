# The UKI's banks in the slot record (firmware/update/uki_slots.py): what the loader records of
# the firmware's choice (BootNext one-shot, BootOrder), MCUmgr image 1 in the state list, and
# the bundle's pending test dropped with a UKI that did not start (slot_boot.choose_bank).
# Sans-I/O; runs under pytest and micropython.

from firmware.boot import slot_boot
from firmware.update import slots as S
from firmware.update import uki_slots as U
from tests.unit.firmware.test_update_slots import H_A, H_B, MemFlash

H_UA = bytes(range(2, 34))
H_UB = bytes(range(3, 35))


def _device():
    """A factory device whose UKI bank b holds 0.2.0 (written by the broker)."""
    flash = MemFlash()
    s = S.Slots(flash, S.initial("a", "0.1.0", 1, H_A))
    u = U.UkiSlots(s)
    u.rec["banks"]["a"] = {"state": S.BOOTABLE, "version": "0.1.0", "counter": 1, "hash": H_UA.hex()}
    assert u.begin_write() == "b"
    u.written("b", {"version": "0.2.0", "anti_rollback_counter": 2}, H_UB)
    return flash, s, u


def _boot(flash, uki_running):
    logs = []
    bank, slots, note = slot_boot.choose_bank(flash, logs.append, uki_running)
    return bank, slots, U.UkiSlots(slots), logs


def test_image_1_in_the_state_list_with_its_own_slots():
    _, s, u = _device()
    imgs = u.images()
    assert [(i["image"], i["slot"], i["version"]) for i in imgs] == [(1, 0, "0.1.0"), (1, 1, "0.2.0")]
    assert imgs[0]["hash"] == H_UA and imgs[0].get("active") and imgs[0].get("confirmed")
    assert not imgs[1].get("active") and not imgs[1].get("confirmed")
    # the bundle's list is unchanged: image 0 only
    assert [i["image"] for i in s.images()] == [0]


def test_test_boots_once_then_confirm_makes_it_the_default():
    flash, s, u = _device()
    u.set_state(H_UB, False)
    assert u.rec["pending"] == "b"
    _, slots, u2, logs = _boot(flash, "b")  # the firmware honoured BootNext
    assert u2.rec["trial"] == "b" and u2.rec["pending"] is None and u2.running == "b"
    assert "trial boot of UKI bank b (version 0.2.0)" in logs[0]
    assert slot_boot.summary(slots.rec)["uki"]["trial"] is True
    assert u2.confirm_running() == 2
    assert u2.rec["confirmed"] == "b" and u2.rec["trial"] is None
    _, slots, u3, logs = _boot(flash, "b")  # BootOrder now starts with b
    assert u3.rec["confirmed"] == "b" and u3.rec["trial"] is None and logs == []


def test_trial_never_confirmed_the_firmware_reverted_and_the_record_says_why():
    flash, s, u = _device()
    u.set_state(H_UB, False)
    _boot(flash, "b")
    _, slots, u3, logs = _boot(flash, "a")  # BootNext was used up: BootOrder boots a again
    assert u3.rec["running"] == "a" and u3.rec["confirmed"] == "a" and u3.rec["trial"] is None
    why = "reverted to UKI bank a (version 0.1.0): trial UKI bank b (version 0.2.0) was never confirmed"
    assert u3.rec["last"] == why and logs == [why]
    assert slot_boot.summary(slots.rec)["uki"]["last"] == why


def test_a_pending_uki_that_did_not_start_takes_the_bundles_test_with_it():
    flash, s, u = _device()
    s.begin_write()
    s.written("b", {"bundle_version": "0.2.0", "anti_rollback_counter": 2}, H_B)
    s.set_state(H_B, False)
    u.set_state(H_UB, False)
    bank, slots, u2, logs = _boot(flash, "a")  # Secure Boot refused UKI b: firmware booted a
    assert bank == "a" and slots.rec["trial"] is None and slots.rec["pending"] is None
    assert u2.rec["pending"] is None and u2.rec["trial"] is None
    assert u2.rec["last"].startswith("UKI bank b (version 0.2.0) did not start")
    assert "the pending test of bank b is dropped with it" in logs


def test_the_fallback_of_a_trial_uki_cannot_be_overwritten_or_erased():
    flash, s, u = _device()
    u.set_state(H_UB, False)
    _, _, u2, _ = _boot(flash, "b")
    for act in (u2.begin_write, lambda: u2.erase(1)):
        try:
            act()
        except S.SlotError as e:
            assert e.rc == S.IMG_NO_FREE_SLOT and "fallback" in e.reason
        else:
            raise AssertionError("the trial's fallback was touched")
    try:
        u2.erase(0)
    except S.SlotError as e:
        assert "running UKI" in e.reason
    else:
        raise AssertionError("the running UKI was erased")


def test_an_old_record_without_a_uki_part_is_a_factory_uki_in_bank_a():
    flash = MemFlash()
    flash.state = S.encode(S.initial("a", "0.1.0", 1, H_A))
    _, slots, u, logs = _boot(flash, "a")
    assert u.rec["running"] == "a" and u.rec["confirmed"] == "a" and logs == []
    assert S.parse(flash.state)["uki"]["banks"]["a"]["state"] == S.BOOTABLE
    # a board without UKI banks leaves the record alone
    flash2 = MemFlash()
    flash2.state = S.encode(S.initial("a", "0.1.0", 1, H_A))
    slot_boot.choose_bank(flash2, lambda line: None)
    assert "uki" not in S.parse(flash2.state)


def test_an_unknown_boot_entry_is_said_and_changes_nothing():
    flash, s, u = _device()
    _, _, u2, logs = _boot(flash, None)
    assert u2.rec["running"] == "a" and "not a UKI bank" in logs[0]
