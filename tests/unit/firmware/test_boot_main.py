# firmware.boot.__main__ helpers that do not need a TPM: finding the firmware partition by its GPT
# name in sysfs, and refusing unsafe paths in code archives. CPython only (the loader's I/O layer
# uses subprocess); under MicroPython these tests return at once.


def _loader():
    try:
        import subprocess  # noqa: F401
        import tempfile  # noqa: F401
    except ImportError:
        return None
    from firmware.boot import __main__ as loader
    return loader


def test_find_partition_by_gpt_name():
    loader = _loader()
    if loader is None:
        return
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as sysfs:
        for node, text in (("vda", "MAJOR=254\nDEVNAME=vda\nDEVTYPE=disk\n"),
                           ("vda1", "DEVNAME=vda1\nPARTN=1\nPARTNAME=esp\n"),
                           ("vda2", "DEVNAME=vda2\nPARTN=2\nPARTNAME=phone-fw\n"),
                           ("vda3", "DEVNAME=vda3\nPARTN=3\nPARTNAME=phone-fw-old\n")):
            os.mkdir(os.path.join(sysfs, node))
            with open(os.path.join(sysfs, node, "uevent"), "w") as f:
                f.write(text)
        assert loader.find_partition("phone-fw", sysfs) == "/dev/vda2"
        assert loader.find_partition("phone-data", sysfs) is None
    assert loader.find_partition("phone-fw", "/nonexistent") is None


def test_code_archive_paths_stay_under_firmware():
    loader = _loader()
    if loader is None:
        return
    from tests.unit.firmware.check import raises
    assert loader.safe_member_path("firmware/console/core.py") == "firmware/console/core.py"
    for bad in ("../etc/passwd", "firmware/../../x", "/firmware/x.py", "other/x.py",
                "firmware//x.py", "firmware/./x.py"):
        e = raises(ValueError, loader.safe_member_path, bad)
        assert "unsafe path" in str(e)
