# firmware.boot.__main__ helpers that do not need a TPM: finding the firmware partition by its GPT
# name in sysfs, and refusing unsafe paths in code archives. CPython only (the loader's I/O layer
# uses subprocess); under MicroPython they are reported as skipped.


from tests.unit.firmware.check import skip


def _loader():
    try:
        import subprocess  # noqa: F401
        import tempfile  # noqa: F401
    except ImportError:
        skip("the stage loader's I/O layer needs subprocess and tempfile (CPython only)")
    from firmware.boot import __main__ as loader
    return loader


def test_find_partition_by_gpt_name():
    loader = _loader()
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
    from tests.unit.firmware.check import raises
    assert loader.safe_member_path("firmware/console/core.py") == "firmware/console/core.py"
    for bad in ("../etc/passwd", "firmware/../../x", "/firmware/x.py", "other/x.py",
                "firmware//x.py", "firmware/./x.py"):
        e = raises(ValueError, loader.safe_member_path, bad)
        assert "unsafe path" in str(e)


def _fake_console(root, out):
    # a stand-in firmware.console that reports what its process looked like, then asks for
    # power-off like the real one
    import os
    os.makedirs(os.path.join(root, "firmware", "console"))
    for rel in ("firmware/__init__.py", "firmware/console/__init__.py"):
        open(os.path.join(root, rel), "w").close()
    with open(os.path.join(root, "firmware", "console", "__main__.py"), "w") as f:
        f.write("import json, os, sys\n"
                "import firmware\n"
                "with open(%r, 'w') as f:\n"
                "    json.dump({'path0': sys.path[0], 'uid': os.getuid(), 'gid': os.getgid(),\n"
                "               'groups': os.getgroups(),\n"
                "               'ec': 'cryptography.hazmat.primitives.asymmetric.ec' in sys.modules,\n"
                "               'loader': 'firmware.boot' in sys.modules,\n"
                "               'package': firmware.__file__,\n"
                "               'env': os.environ.get('PYTHONPATH'), 'cwd': os.getcwd(),\n"
                "               'file': __file__, 'name': __name__}, f)\n"
                "sys.exit(80)\n" % out)


def test_forked_console_runs_only_the_given_code_as_the_phone_user():
    loader = _loader()
    import json
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o777)  # the console runs as the phone user when the tests run as root
        app, out = os.path.join(tmp, "app"), os.path.join(tmp, "out.json")
        _fake_console(app, out)
        loader.warm()
        rc = loader.wait_console(loader.start_console(app))
        assert rc == loader.EXIT_POWEROFF
        with open(out) as f:
            seen = json.load(f)
    assert seen["path0"] == app and seen["env"] == app and seen["name"] == "__main__"
    assert seen["file"] == os.path.join(app, "firmware", "console", "__main__.py")
    # the loader's own firmware modules are gone: `firmware` is the given directory's package
    assert seen["package"] == os.path.join(app, "firmware", "__init__.py")
    assert seen["loader"] is False
    assert seen["ec"] is True  # warmed in the parent, inherited
    assert seen["cwd"] == "/"
    if os.getuid() == 0:
        assert (seen["uid"], seen["gid"], seen["groups"]) == (loader.PHONE_UID, loader.PHONE_GID, [])
    else:
        assert seen["uid"] == os.getuid()


def test_preforked_console_waits_for_its_code_then_runs_it():
    loader = _loader()
    import json
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o777)
        app, out = os.path.join(tmp, "app"), os.path.join(tmp, "out.json")
        _fake_console(app, out)
        p = loader.Preforked()
        assert os.waitpid(p.pid, os.WNOHANG) == (0, 0)  # alive, waiting for the go-ahead
        assert not os.path.exists(out)
        assert loader.wait_console(p.go(app)) == loader.EXIT_POWEROFF
        with open(out) as f:
            seen = json.load(f)
    assert seen["path0"] == app and seen["package"] == os.path.join(app, "firmware", "__init__.py")
    assert seen["loader"] is False and seen["cwd"] == "/"
    if os.getuid() == 0:
        assert (seen["uid"], seen["gid"], seen["groups"]) == (loader.PHONE_UID, loader.PHONE_GID, [])


def test_preforked_console_cancelled_exits_without_running_anything():
    loader = _loader()
    p = loader.Preforked()
    p.cancel()
    assert loader.wait_console(p.pid) == 0


def test_forked_console_that_crashes_reports_a_failure_status():
    loader = _loader()
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o777)
        app = os.path.join(tmp, "app")
        os.makedirs(os.path.join(app, "firmware", "console"))
        for rel in ("firmware/__init__.py", "firmware/console/__init__.py"):
            open(os.path.join(app, rel), "w").close()
        with open(os.path.join(app, "firmware", "console", "__main__.py"), "w") as f:
            f.write("raise RuntimeError('broken console')\n")
        assert loader.wait_console(loader.start_console(app)) == 1


def test_installed_sourceless_code_imports():
    loader = _loader()
    import subprocess
    import sys
    import tempfile
    import importlib._bootstrap_external as be
    import importlib.util
    from tests.unit.firmware.test_boot_ustar import make_ustar

    def pyc(src, path):
        code = compile(src, path, "exec", dont_inherit=True)
        return bytes(be._code_to_hash_pyc(code, importlib.util.source_hash(src), False))

    tag = sys.implementation.cache_tag
    members = []
    for rel, src in (("firmware/__init__.py", b""), ("firmware/x/__init__.py", b""),
                     ("firmware/x/a.py", b"A = 41 + 1\n")):
        d, _, base = rel.rpartition("/")
        members += [(rel, src), ("%s/__pycache__/%s.%s.pyc" % (d, base[:-3], tag), pyc(src, rel))]

    class Found:
        pass

    out = Found()
    out.components = [("phone-app", make_ustar(members))]
    with tempfile.TemporaryDirectory() as root:
        loader.install(out, root)
        r = subprocess.run([sys.executable, "-I", "-c",
                            "import sys; sys.path.insert(0, %r); import firmware.x.a as m; "
                            "print(m.A, m.__file__)" % (root + "/app")],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["42", root + "/app/firmware/x/a.pyc"]


def test_install_writes_code_and_config_read_only():
    loader = _loader()
    import os
    import tempfile
    from firmware.boot import stage
    from tests.unit.firmware.test_boot_ustar import make_ustar

    class Found:
        pass

    out = Found()
    code = make_ustar([("firmware/x/a.py", b"A = 1\n"),
                       ("firmware/x/__pycache__/a.cpython-311.pyc", b"pyc bytes"),
                       ("firmware/x/b.py", b"B = 2\n"),
                       ("firmware/x/__pycache__/b.cpython-399.pyc", b"other interpreter")])
    out.components = [("phone-app", code), ("device-config", b"{}")]
    with tempfile.TemporaryDirectory() as root:
        loader.install(out, root, cache_tag="cpython-311")
        # sourceless: the byte code in place of the source, no __pycache__
        with open(root + "/app/firmware/x/a.pyc", "rb") as f:
            assert f.read() == b"pyc bytes"
        assert sorted(os.listdir(root + "/app/firmware/x")) == ["a.pyc", "b.py"]
        with open(root + "/app/firmware/x/b.py", "rb") as f:  # no byte code for this one
            assert f.read() == b"B = 2\n"
        with open(root + "/etc/device-config", "rb") as f:
            assert f.read() == b"{}"
        assert os.stat(root + "/app/firmware/x/a.pyc").st_mode & 0o777 == 0o444
    out.components = [("phone-app", make_ustar([("firmware/a.py", b"1"), ("firmware/a.py", b"2")]))]
    with tempfile.TemporaryDirectory() as root:
        try:
            loader.install(out, root)
            raise AssertionError("a repeated member must not overwrite the first")
        except FileExistsError:
            pass
    out.components = [("phone-app", make_ustar([("firmware/../etc/x", b"1")]))]
    with tempfile.TemporaryDirectory() as root:
        try:
            loader.install(out, root)
            raise AssertionError("unsafe path accepted")
        except ValueError as e:
            assert "unsafe path" in str(e)
    assert stage.STATE_VERIFIED == "verified"
