"""One fork server for every kind of process Cumulo starts on this machine.

Jobs, pipeline steps and endpoint replicas all start the same way: a process that imported
what they need once (:mod:`cumulo.forkserver.server`) forks a child that calls the entry point
its caller names. The caller's side (:class:`ForkServer`) hands back a :class:`Forked` process
shaped like :class:`subprocess.Popen`. What to preload and what the child runs belong to the
caller (``compute/executors/local.py``, ``serving/runtimes/local.py``); how to fork safely
lives here, once. So does how to find and end every process below one, even those that left
its process group (:mod:`cumulo.forkserver.reaper`).
"""

from __future__ import annotations

from cumulo.forkserver.client import Forked, ForkServer, process_alive
from cumulo.forkserver.preload import import_modules, parse_preload

__all__ = ["ForkServer", "Forked", "import_modules", "parse_preload", "process_alive"]
