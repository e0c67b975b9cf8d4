"""jupyter-server's ``ServerApp`` as a notebook runs it (:mod:`cumulo.notebooks.lab` starts
it): its settings, and idleness looked at as often as a short timeout needs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jupyter_server.serverapp import ServerApp
from tornado import ioloop
from traitlets.config import Config

__all__ = ["NotebookServer", "config"]

# How often idleness is looked at: jupyter-server's own look is once a minute, too coarse
# for short timeouts.
MAX_LOOK_EVERY = 60.0


class NotebookServer(ServerApp):
    """jupyter-server's ServerApp that stops once idle for its ``shutdown_no_activity_timeout``,
    looked at as often as the timeout needs, and remembers that idleness is what stopped it.

    Idle means: no kernel (jupyter-server culls one idle that long, open tab or not), no
    terminal, and nothing run in a kernel or saved since. Jupyter's own measure counts every API
    request, and an open JupyterLab tab polls the API every few seconds: a tab left open would
    keep the server (and its metering) running for ever."""

    stopped_idle = False
    signalled = False
    _active_at: datetime | None = None

    def _signal_stop(self, sig: Any, frame: Any) -> None:
        self.signalled = True  # the job cancelled: the control plane knows already
        super()._signal_stop(sig, frame)

    def init_shutdown_no_activity(self) -> None:
        timeout = self.shutdown_no_activity_timeout
        if timeout > 0:
            self._active_at = datetime.now(UTC)
            every = min(MAX_LOOK_EVERY, max(0.5, timeout / 4))
            ioloop.PeriodicCallback(self.shutdown_no_activity, every * 1000).start()

    def _last_active(self) -> datetime:
        km = self.kernel_manager
        times: list[datetime | None] = [self._active_at or datetime.now(UTC)]
        for kernel_id in list(km.list_kernel_ids()):
            times.append(getattr(km.get_kernel(kernel_id), "last_activity", None))
        times.append(getattr(self.contents_manager, "changed_at", None))
        self._active_at = max(t for t in times if t is not None)
        return self._active_at

    def shutdown_no_activity(self) -> None:
        last = self._last_active()
        km = self.kernel_manager
        if len(km) != 0 or self.extension_manager.any_activity():  # type: ignore[no-untyped-call]
            return
        idle = (datetime.now(UTC) - last).total_seconds()
        if idle > self.shutdown_no_activity_timeout:
            self.log.info("Idle for %d seconds (no kernel, no terminal, nothing saved): "
                          "shutting down.", idle)
            self.stopped_idle = True
            self.stop()


def config(*, name: str, ip: str, root: Path, secret: str, folder: str,
           idle_timeout: float) -> Config:
    """The server's settings: under /notebooks/NAME/, on ``ip`` (a port of the system's
    choice), with ``secret`` as its token, culled after ``idle_timeout`` seconds idle."""
    c = Config()
    c.ServerApp.base_url = f"/notebooks/{name}/"
    c.ServerApp.default_url = "/lab"
    c.ServerApp.ip = ip
    c.ServerApp.port = 0  # the system's choice: reported once it listens
    c.ServerApp.port_retries = 0
    c.ServerApp.open_browser = False
    c.ServerApp.allow_root = True  # the job runs as the server does: the deployment's choice
    c.StorageContentsManager.delete_to_trash = False  # the storage copy goes too: no trash
    c.ServerApp.root_dir = str(root)
    c.ServerApp.allow_remote_access = ip != "127.0.0.1"
    c.ServerApp.jpserver_extensions = {"jupyterlab": True}
    c.ServerApp.shutdown_no_activity_timeout = int(max(1, idle_timeout))
    c.IdentityProvider.token = secret
    # Kernels left idle go first, open tab or not; the server goes once none is left.
    c.MappingKernelManager.cull_idle_timeout = int(max(1, idle_timeout))
    c.MappingKernelManager.cull_interval = int(min(MAX_LOOK_EVERY,
                                                   max(1, idle_timeout / 4)))
    c.MappingKernelManager.cull_connected = True
    c.TerminalManager.cull_inactive_timeout = int(max(1, idle_timeout))
    c.TerminalManager.cull_interval = int(min(MAX_LOOK_EVERY, max(1, idle_timeout / 4)))
    c.ServerApp.contents_manager_class = "cumulo.notebooks.contents.StorageContentsManager"
    c.StorageContentsManager.folder = folder
    # Nothing to fetch from the internet: the news and update checks stay off.
    c.LabApp.news_url = None
    c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
    return c


