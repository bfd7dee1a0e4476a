# Runs the firmware unit tests under the real `micropython` command (no pytest there): imports each
# tests/unit/firmware/test_*.py module, calls every test_* function, prints a pytest-like summary
# ("N passed, N failed, N skipped"; a test that cannot run here calls check.skip(reason) and is
# listed with its reason, never counted as passed) and exits non-zero on any failure. Usage: micropython tests/mpy_run.py  (from the repository root)
# It runs under CPython too (tests/system/test_image_userland.py runs it with the image's own
# python3 and pruned standard library).
import os
import sys

sys.path.insert(0, ".")
if sys.path.count("") == 0:
    sys.path.insert(0, "")

TEST_DIR = "tests/unit/firmware"


def _print_exception(e):
    if hasattr(sys, "print_exception"):  # MicroPython
        sys.print_exception(e)
    else:
        import traceback
        traceback.print_exception(type(e), e, e.__traceback__)


def main():
    from tests.unit.firmware.check import Skipped

    only = sys.argv[1:]
    passed = 0
    failed = []
    skipped = []
    for name in sorted(os.listdir(TEST_DIR)):
        if not (name.startswith("test_") and name.endswith(".py")):
            continue
        modname = name[:-3]
        if only and modname not in only:
            continue
        try:
            mod = __import__("tests.unit.firmware." + modname, None, None, [modname])
        except Exception as e:
            failed.append((modname, "import", e))
            print("FAIL %s (import): %r" % (modname, e))
            continue
        for attr in sorted(dir(mod)):
            if not attr.startswith("test_"):
                continue
            fn = getattr(mod, attr)
            try:
                fn()
                passed += 1
            except Skipped as e:
                skipped.append((modname, attr, str(e)))
                print("SKIP %s::%s: %s" % (modname, attr, e))
            except Exception as e:
                failed.append((modname, attr, e))
                print("FAIL %s::%s: %r" % (modname, attr, e))
                _print_exception(e)
    print("%s: %d passed, %d failed, %d skipped" % (sys.implementation.name, passed, len(failed),
                                                   len(skipped)))
    sys.exit(1 if failed else 0)


main()
