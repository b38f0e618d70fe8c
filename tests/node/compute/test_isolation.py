"""The job user and the work directories: never root, no switching without
root, directories the job user may reach, input written safely, output read
without following a job's links."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mycelia.node.compute.isolation import JobUser, WorkRoot, job_user
from mycelia.node.config import ConfigError
from tests.node.compute.conftest import IS_ROOT

NOBODY = pwd.getpwnam("nobody")
needs_root = pytest.mark.skipif(not IS_ROOT, reason="switching users needs root")


def test_the_job_user() -> None:
    as_root = job_user("nobody", euid=0)
    assert as_root == JobUser("nobody", NOBODY.pw_uid, NOBODY.pw_gid, switch=True)
    assert job_user(str(NOBODY.pw_uid), euid=0) == as_root
    # A node that is not root runs jobs as itself, and must be told so.
    assert job_user("nobody", euid=NOBODY.pw_uid).switch is False
    with pytest.raises(ConfigError) as exc:
        job_user("nobody", euid=NOBODY.pw_uid + 1)
    assert exc.value.key == "compute.user"
    assert "cannot run jobs as 'nobody'" in str(exc.value)
    for spec, why in [("root", "root"), ("0", "root"), ("no-such-user-here", "no user")]:
        with pytest.raises(ConfigError, match=why):
            job_user(spec, euid=0)
    with pytest.raises(ValueError, match="never run as root"):
        JobUser("x", 0, 5, switch=True)


def user() -> JobUser:
    return job_user("nobody") if IS_ROOT else job_user(pwd.getpwuid(os.geteuid()).pw_name)


def test_the_default_work_root_is_fresh_and_removed() -> None:
    root = WorkRoot.prepare(None, user())
    assert root.owned
    assert root.path.stat().st_mode & 0o777 == 0o711
    job = root.job_dir("abc")
    assert job == root.path / "job-abc"
    st = job.stat()
    assert (st.st_mode & 0o777, st.st_uid) == (0o700, root.user.uid)
    root.close()
    assert not root.path.exists()


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A directory the job user can reach (pytest's tmp_path is below a 0700 one)."""
    d = Path(tempfile.mkdtemp(prefix="mycelia-test-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def test_a_configured_work_root_is_checked_and_cleaned(reachable: Path) -> None:
    base = reachable
    work = base / "jobs"
    root = WorkRoot.prepare(work, user())
    assert not root.owned
    left = root.job_dir("left-behind")
    (left / "file").write_text("x")
    again = WorkRoot.prepare(work, user())  # a restart removes what a crash left
    assert not left.exists()
    again.close()
    assert work.exists()  # the operator's directory stays
    link = base / "link"
    link.symlink_to(work)
    with pytest.raises(ConfigError, match="must be a directory owned by the node"):
        WorkRoot.prepare(link, user())


@needs_root
def test_a_work_root_the_job_user_cannot_reach_is_refused(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    tmp_path.chmod(0o755)
    with pytest.raises(ConfigError) as exc:
        WorkRoot.prepare(hidden / "jobs", user())
    assert exc.value.key == "compute.work_dir"
    assert f"{hidden} is not searchable" in str(exc.value)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY.pw_uid, NOBODY.pw_gid)
    with pytest.raises(ConfigError, match="owned by the node"):
        WorkRoot.prepare(theirs, user())


@pytest.fixture
def root() -> Iterator[WorkRoot]:
    r = WorkRoot.prepare(None, user())
    yield r
    r.close()


def test_input_is_written_as_the_job_user_s_and_never_through_a_link(root: WorkRoot) -> None:
    job = root.job_dir("in")
    root.write_input(job, "input", b"data")
    st = (job / "input").stat()
    assert ((job / "input").read_bytes(), st.st_uid, st.st_mode & 0o777) == (
        b"data",
        root.user.uid,
        0o600,
    )
    (job / "planted").symlink_to("/etc/passwd")
    with pytest.raises(FileExistsError):
        root.write_input(job, "planted", b"x")


def test_output_is_bounded_and_only_the_job_s_own_regular_file(root: WorkRoot) -> None:
    job = root.job_dir("out")
    out = job / "output"
    assert root.read_output(job, "output", 10) == (b"", False)  # none written
    out.write_bytes(b"0123456789")
    os.chown(out, root.user.uid, root.user.gid)
    assert root.read_output(job, "output", 10) == (b"0123456789", False)
    assert root.read_output(job, "output", 4) == (b"0123", True)
    out.unlink()
    out.symlink_to("/etc/hostname")
    assert root.read_output(job, "output", 100) == (b"", False)
    out.unlink()
    os.mkfifo(out)  # must not block the node
    assert root.read_output(job, "output", 100) == (b"", False)


@needs_root
def test_output_owned_by_someone_else_is_not_read(root: WorkRoot) -> None:
    # A hard link to a file of root's would look like this: not the job's.
    job = root.job_dir("hard")
    (job / "output").write_text("root's secret")
    assert root.read_output(job, "output", 100) == (b"", False)


def test_removal_leaves_nothing_whatever_the_job_did(root: WorkRoot, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("keep me")
    job = root.job_dir("mess")
    locked = job / "a" / "b"
    locked.mkdir(parents=True)
    (locked / "f").write_text("x")
    (job / "link").symlink_to(tmp_path)
    (job / "a").chmod(0o000)
    root.remove(job)
    assert not job.exists()
    assert outside.read_text() == "keep me"
