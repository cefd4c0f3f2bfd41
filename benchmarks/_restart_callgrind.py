"""A fixed number of supervisor restarts, logging off, for counting instructions per restart.

Run it under callgrind twice, with N restarts and with 0, and divide the
difference of the totals by N (start-up and the 200 warm-up restarts
cancel out)::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/_restart_callgrind.py plain 3000   # then with 0

``plain``: a function child that crashes on a message; ``genserver``: a
GenServer child whose ``handle_cast`` returns ``('stop', 'crash', state)``.
One ``one_for_one`` supervisor with a window that never fills (the
``large`` rows of ``supervisor.py``), the observe handlers attached as
``import snowg`` leaves them. Instruction counts do not depend on the
machine's load.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import snowg
from snowg import ChildSpec, supervisor

# The same children as supervisor.py's rows (benchmarks/ is on sys.path when run as a script).
from supervisor import CrashServer, plain_child  # noqa: E402


def main(kind: str, n: int) -> None:
    logging.getLogger("snowg").disabled = True
    me = snowg.self()
    fn = plain_child if kind == "plain" else CrashServer
    supervisor.start_link([ChildSpec("c", (fn, (me,)))], intensity=10**9, period=3600)
    _up, child = snowg.receive(timeout=5)
    crash = snowg.send if kind == "plain" else snowg.cast
    restarted: Any = child
    for _ in range(200 + n):  # (no timeout: a receive timer per restart would be counted too)
        crash(restarted, "crash")
        _up, restarted = snowg.receive()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("plain", "genserver"):
        sys.exit("usage: _restart_callgrind.py plain|genserver N")
    main(sys.argv[1], int(sys.argv[2]))
