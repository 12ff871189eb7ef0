"""Prints the WASI test suite's results (the runner's JSON report) as a table
and a closing `N passed, N failed` line; fails unless all 14 tests ran and
passed.

    python3 conformance/summary.py target/conformance.json
"""

import json
import sys

EXPECTED = 14


def main(path: str) -> int:
    with open(path, encoding="utf-8") as report:
        results = json.load(report)["results"]
    tests = sorted((t for suite in results for t in suite["tests"]),
                   key=lambda t: t["name"])
    print("| test | outcome | seconds |")
    print("| --- | --- | --- |")
    for test in tests:
        print(f"| {test['name']} | {test['outcome']} | {test['duration_s']:.2f} |")
    passed = sum(t["outcome"] == "pass" for t in tests)
    failed = len(tests) - passed
    print(f"conformance: {passed} passed, {failed} failed")
    if passed != EXPECTED or failed:
        print(f"conformance: expected all {EXPECTED} tests to run and pass",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
