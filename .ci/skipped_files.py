"""Test files with at least one skipped test in a pytest JUnit XML report, one a line.

.ci/run runs them again once the optional oracles (torch, onnxruntime) are
installed: those are the tests that skip without them.
"""
import os
import sys
import xml.etree.ElementTree as ET


def test_file(classname):
    """tests/test_x.py for "tests.test_x" or "tests.test_x.TestClass"."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        path = os.path.join(*parts[:end]) + ".py"
        if os.path.isfile(path):
            return path
    return None


def main(report):
    files = []
    for case in ET.parse(report).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            path = test_file(case.get("classname") or case.get("name", ""))
            if path and path not in files:
                files.append(path)
    print("\n".join(files))


if __name__ == "__main__":
    main(sys.argv[1])
