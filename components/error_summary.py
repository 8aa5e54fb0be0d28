"""One-line summaries of exceptions, for error messages that must fit on one line."""

from __future__ import annotations

import errno


def first_line(err: BaseException, limit: int = 300) -> str:
    """'Type: first line of the message', cut to limit characters (driver errors run to pages)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:limit]


# What a user does about an OS error they can cause, by errno.
_OS_FIXES = {
    errno.ENOSPC: "free space there, or point data.cache_dir / train.checkpoint_dir / the tracking "
                  "store at a disk with room",
    errno.EDQUOT: "free space, or point the cache, checkpoints or tracking store elsewhere",
    errno.EACCES: "make it writable (readable for inputs), or choose a folder you own",
    errno.EPERM: "make it writable, or choose a folder you own",
    errno.EROFS: "choose a folder on a writable file system",
    errno.ENOTDIR: "a file stands where a folder is needed: remove or rename that file, or choose "
                   "another folder",
    errno.EISDIR: "a folder stands where a file is needed: remove it or choose another path",
    errno.EEXIST: "remove what is there or choose another path",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "choose a shorter folder",
    errno.EMFILE: "raise the limit (ulimit -n) or lower data.decode_workers",
    errno.ENOMEM: "lower train.batch_size or data.decode_workers",
    errno.ECONNREFUSED: "start the server, or check its host and port",
}


def os_error_line(err: OSError) -> str:
    """'<what failed> <path>: <strerror>; <fix>' on one line, for an OS error a user can cause."""
    path = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    cause = err.strerror or first_line(err)
    fix = _OS_FIXES.get(err.errno or -1, "check the path, its permissions and free space")
    return f"{path + ': ' if path else ''}{cause}; {fix}"
