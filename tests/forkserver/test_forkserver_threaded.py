"""Imported by a fork server in test_forkserver.py: starts a thread at import, as a library
that is unsafe to fork from might. Holds no tests."""

from __future__ import annotations

import threading
import time

threading.Thread(target=time.sleep, args=(30,), daemon=True, name="started-at-import").start()
