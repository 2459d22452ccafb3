"""One writer per run directory: an exclusive `fcntl` lock on `<run>/.lock`, held for the life of
a `train` or `resume`. The kernel drops the lock when its process ends in any way (SIGKILL
included), so a crashed holder never leaves a stale lock; the file only names the last holder
(pid and host) for the message a second process prints."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from frugal.errors import FrugalError

LOCK_FILE = ".lock"


class RunLock:
    """`with RunLock(run_dir, "resume"):` — raises FrugalError naming the holder when another
    process holds the run."""

    def __init__(self, run_dir: Path, command: str):
        self.path = Path(run_dir) / LOCK_FILE
        self.command = command
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise FrugalError(
                f"cannot write to {self.path.parent} ({e.strerror}); {self.command} needs a "
                "writable run directory"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise FrugalError(
                f"{self.path.parent} is in use by {holder}; wait for it to finish or stop it "
                "(a run has one writer at a time)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"frugal {self.command} (pid {os.getpid()} on {socket.gethostname()})\n".encode(), 0
        )
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
