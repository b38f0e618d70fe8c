"""Who a job runs as and where: the job user, the private work directories.

Why this exists: a job runs code and data a stranger sent. It must not run
as root, must not find the files of jobs that ran before it, and the node
must not be fooled into reading or writing anything but the job's own files
on its behalf. (Jobs running at the same time run as the same user, so they
could reach each other: ``compute.max_jobs`` is 1 unless the operator
accepts that.)

The job user (:func:`job_user`): ``compute.user``, resolved from the user
database. A node running as root switches every job to it (no supplementary
groups) and refuses a user whose uid or primary gid is 0. A node not
running as root cannot switch users: it runs jobs as itself, and only if
``compute.user`` names itself — an explicit choice, since such a job can
then read whatever the node can (its key included).

The work root (:class:`WorkRoot`): ``compute.work_dir``, or by default a
fresh directory under the system's temporary directory (``PrivateTmp`` under
systemd). Mode 0711, owned by the node: a job user may pass through it to
its own directory but not list it; the root and its ancestors must be
searchable by the job user, which is checked at start.

A job's directory (:meth:`WorkRoot.job_dir`): ``<root>/job-<job id>``, mode
0700, owned by the job user, the runtime's working directory, ``HOME`` and
``TMPDIR``, removed with everything in it when the job ends. The input file
is created in it (exclusively, not following links) before the job starts;
the output file is opened without following a symbolic link, must be a
regular file owned by the job user (not a hard link to someone else's
file), and is read up to the runtime's limit.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mycelia.node.config import ConfigError

__all__ = ["JobUser", "WorkRoot", "job_user"]


@dataclass(frozen=True, slots=True)
class JobUser:
    """The user jobs run as; ``switch`` when the node (root) changes to it."""

    name: str
    uid: int
    gid: int
    switch: bool

    def __post_init__(self) -> None:
        if self.uid == 0 or self.gid == 0:
            raise ValueError("jobs never run as root or with group 0")


def job_user(spec: str, *, euid: int | None = None) -> JobUser:
    """Resolve ``compute.user`` (a name or a uid) for a node running as
    ``euid`` (default: this process's). Raises :class:`ConfigError`."""
    euid = os.geteuid() if euid is None else euid
    try:
        entry = pwd.getpwuid(int(spec)) if spec.isdigit() else pwd.getpwnam(spec)
    except KeyError:
        raise ConfigError(
            f"compute.user: no user {spec!r} on this system (create it, or name another)",
            key="compute.user",
        ) from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise ConfigError(
            f"compute.user: {spec!r} is root or in group 0; jobs never run as root",
            key="compute.user",
        )
    if euid == 0:
        return JobUser(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=True)
    if entry.pw_uid != euid:
        raise ConfigError(
            f"compute.user: the node runs as uid {euid}, not as root, so it cannot run jobs "
            f"as {spec!r}; run the node as root, or set compute.user to the node's own user "
            "(jobs then share the node's files, its key included)",
            key="compute.user",
        )
    return JobUser(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=False)


def _searchable_by(path: Path, user: JobUser) -> bool:
    st = path.stat()
    if st.st_uid == user.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == user.gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


@dataclass(frozen=True, slots=True)
class WorkRoot:
    """The directory job directories are made in; ``owned`` if the node
    made it (and removes it at :meth:`close`)."""

    path: Path
    user: JobUser
    owned: bool

    @classmethod
    def prepare(cls, configured: Path | None, user: JobUser) -> WorkRoot:
        """Create or check the work root (see the module docstring) and remove
        job directories left behind. Raises :class:`ConfigError`."""
        if configured is None:
            path = Path(tempfile.mkdtemp(prefix="mycelia-compute-"))
            owned = True
        else:
            path, owned = configured, False
            try:
                path.mkdir(mode=0o711, parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"compute.work_dir: cannot create {path}: {exc.strerror}",
                    key="compute.work_dir",
                ) from None
            st = path.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                raise ConfigError(
                    f"compute.work_dir: {path} must be a directory owned by the node "
                    "(not a symbolic link)",
                    key="compute.work_dir",
                )
        os.chmod(path, 0o711)
        if user.switch:
            for p in (path, *path.parents):
                if not _searchable_by(p, user):
                    raise ConfigError(
                        f"compute.work_dir: {user.name} cannot reach {path}: {p} is not "
                        "searchable by it (chmod o+x, or choose another work_dir)",
                        key="compute.work_dir",
                    )
        root = cls(path, user, owned)
        for child in path.iterdir():
            if child.name.startswith("job-"):
                root.remove(child)
        return root

    def job_dir(self, job_id: str) -> Path:
        """A new private directory for the job ``job_id``."""
        path = self.path / f"job-{job_id}"
        path.mkdir(mode=0o700)
        if self.user.switch:
            os.chown(path, self.user.uid, self.user.gid)
        return path

    def write_input(self, job_dir: Path, name: str, data: bytes) -> None:
        """Create ``name`` in the job's directory holding ``data``, before the job runs."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(job_dir / name, flags, 0o600)
        try:
            if self.user.switch:
                os.fchown(fd, self.user.uid, self.user.gid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def read_output(self, job_dir: Path, name: str, limit: int) -> tuple[bytes, bool]:
        """``(output, truncated)`` from the job's file ``name``: at most
        ``limit`` bytes. Empty if the job made no such regular file of its own."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(job_dir / name, flags)
        except OSError:  # missing, or a symbolic link
            return b"", False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != self.user.uid:
                return b"", False
            chunks: list[bytes] = []
            left = limit + 1
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            data = b"".join(chunks)
            return data[:limit], len(data) > limit
        finally:
            os.close(fd)

    def remove(self, job_dir: Path) -> None:
        """Remove a job's directory and everything in it (its symbolic links
        are removed, never followed), whatever modes the job left."""

        def retry(func: object, path: str, exc_info: object) -> None:
            # A job may leave a directory without write or search permission
            # (matters when the node is not root): open it up and retry once.
            with contextlib.suppress(OSError):
                parent = os.path.dirname(path)
                os.chmod(parent, 0o700, follow_symlinks=False)
                if os.path.isdir(path) and not os.path.islink(path):
                    os.chmod(path, 0o700, follow_symlinks=False)
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)

        shutil.rmtree(job_dir, onerror=retry)

    def close(self) -> None:
        """Remove the work root if the node made it."""
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)
