"""``python -m testbed build|cluster|run|demo``: the test bed's command line.

Role: the command line of the test bed, for the Makefile (``make controlplane``,
``make flux-controllers``, ``make cluster``, ``make run``, ``make cluster-down``) and for
people.
Progress goes to stderr; stdout carries what a script consumes (bin dirs, the
``export KUBECONFIG=`` line, its last line being the one to use), except for ``run``,
which prints its how-to-look instructions there before the controller takes over.
"""

from __future__ import annotations

import sys

USAGE = "usage: python -m testbed build controlplane|flux|all\n" \
        "       python -m testbed cluster up|down|status [--state-dir DIR]\n" \
        "       python -m testbed run [--state-dir DIR] [--storage-path DIR]\n" \
        "       python -m testbed demo up|down|status|push TAG... [--state-dir DIR]\n"


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write(USAGE)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "build":
        from testbed import build

        return build.main(rest)
    if command == "cluster":
        from testbed import cluster

        return cluster.main(rest)
    if command in ("run", "demo"):
        from testbed import demo

        return demo.run(rest) if command == "run" else demo.demo_main(rest)
    sys.stderr.write(USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
