"""What the Python tests of spec/embed/ share: a check that counts, and
the closing line ctest's output is read by."""
import sys

counts = {"passed": 0, "failed": 0}


def check(cond, what, detail=""):
    """Counts cond; prints the check, and detail when it failed."""
    counts["passed" if cond else "failed"] += 1
    print(("ok   " if cond else "FAIL ") + what +
          ("" if cond or not detail else "\n" + detail))


def finish():
    """Prints "N passed, N failed" and exits 1 if any failed."""
    print("%d passed, %d failed" % (counts["passed"], counts["failed"]))
    sys.exit(1 if counts["failed"] else 0)
