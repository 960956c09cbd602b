"""msvcrt.locking's behaviour on Windows, imitated with POSIX record locks so that rundir.py's Windows
branch runs on Linux: a non-blocking lock of bytes from the file's position that fails with OSError
while another process holds them, released when that process dies."""

import fcntl
import os

LK_UNLCK, LK_NBLCK = 0, 2


def locking(fd: int, mode: int, nbytes: int) -> None:
    position = os.lseek(fd, 0, os.SEEK_CUR)
    if mode == LK_UNLCK:
        fcntl.lockf(fd, fcntl.LOCK_UN, nbytes, position)
        return
    # POSIX needs a file open for writing to lock it exclusively; a probe opened for reading
    # conflicts with a writer's lock all the same.
    writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
    try:
        fcntl.lockf(fd, (fcntl.LOCK_EX if writable else fcntl.LOCK_SH) | fcntl.LOCK_NB, nbytes, position)
    except OSError:
        raise PermissionError(13, "Permission denied") from None  # what msvcrt raises
