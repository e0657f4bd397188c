"""Where a file system puts the many small files and folders of a run.

ext4 places a new folder's inode in its parent's block group, and a file's in its folder's. A
run makes and removes thousands of them (a job's scratch, a gather's private input copies, the
store's files) in a few folders, so nearly all land in one or two groups. Without a journal
(common for scratch disks, and this project's test machines), ext4 will not reuse an inode
freed in the last one to six minutes, and finding a free one in a group steps over every such
inode, each looked up in the inode table: making a file costs 0.1 to 1 ms of kernel time after
a few thousand removals, against 15 µs on a fresh group, and back-to-back runs get slower.

The ``T`` attribute (``FS_TOPDIR_FL``, ``chattr +T``) asks ext4 to spread a folder's
subfolders over the block groups with the most free inodes (the Orlov allocator, used for
top-level folders), away from those just freed: 200 folders with a file each, made after such
removals, take 26 ms of kernel time instead of 110 ms. Other file systems lack the attribute
(XFS, tmpfs, NFS, ...): there it is not set and nothing changes.
"""

from __future__ import annotations

import fcntl
import os
import struct

#: From <linux/fs.h>.
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000
_FLAGS = struct.Struct("l")  # the ioctls' argument is a long, whatever their names say


def spread_subdirectories(path: str) -> bool:
    """Mark the folder ``path`` so that the file system spreads its subfolders (see the
    module docstring); whether it is marked. Best effort: never raises."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        flags = _FLAGS.unpack(fcntl.ioctl(fd, FS_IOC_GETFLAGS, _FLAGS.pack(0)))[0]
        if not flags & FS_TOPDIR_FL:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, _FLAGS.pack(flags | FS_TOPDIR_FL))
        return True
    except OSError:  # ENOTTY, EOPNOTSUPP, EPERM, ...: not this file system's, or not ours
        return False
    finally:
        os.close(fd)
