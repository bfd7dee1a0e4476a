# Runs the firmware unit tests under the real `micropython` command (no pytest there): imports each
# tests/unit/firmware/test_*.py module, calls every test_* function, prints a pytest-like summary
# and exits non-zero on any failure. Usage: micropython tests/mpy_run.py  (from the repository root)
import os
import sys

sys.path.insert(0, ".")
if sys.path.count("") == 0:
    sys.path.insert(0, "")

TEST_DIR = "tests/unit/firmware"


def main():
    only = sys.argv[1:]
    passed = 0
    failed = []
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
            except Exception as e:
                failed.append((modname, attr, e))
                print("FAIL %s::%s: %r" % (modname, attr, e))
                sys.print_exception(e)
    print("micropython: %d passed, %d failed" % (passed, len(failed)))
    sys.exit(1 if failed else 0)


main()
