"""Test jobs: the programs the runner tests configure as runtimes.

Run as ``python -I -S jobs.py NAME [ARG...]`` by the runner (as the job user,
in the job's work directory), never imported by the tests. Standard library
only. Each job measures itself where a test compares the runner's figures
with an independent one: a process's CPU from its own rusage (exact to the
microsecond), written out before it exits.
"""

import json
import os
import resource
import signal
import sys
import time


def burn(seconds: float) -> None:
    """Busy CPU for ``seconds`` of this process's own CPU time."""
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        pass


def cpu_self_and_children() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def daemonise(then) -> int:
    """Double fork: the grandchild calls setsid and runs ``then`` (its
    parent exits at once, so nobody waits for it); returns the
    intermediate child's pid to the caller, which reaps it."""
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            os.setsid()
            try:
                then()
            finally:
                os._exit(0)
        os._exit(0)
    os.waitpid(child, 0)
    return child


def wait_for(name: str) -> str:
    while not os.path.exists(name):
        time.sleep(0.01)
    with open(name) as fh:
        return fh.read()


def write_atomically(name: str, text: str) -> None:
    with open(name + ".tmp", "w") as fh:
        fh.write(text)
    os.rename(name + ".tmp", name)


def job_daemon_burn(seconds: str) -> None:
    """A daemonised grandchild burns CPU and reports its pid and CPU; the
    main process waits for that report, then prints both CPU figures:
    its own with its reaped children (which does NOT include the grandchild:
    that is what RUSAGE_CHILDREN misses) and the grandchild's."""

    def grandchild() -> None:
        burn(float(seconds))
        me = resource.getrusage(resource.RUSAGE_SELF)
        write_atomically("grandchild", json.dumps([os.getpid(), me.ru_utime + me.ru_stime]))

    daemonise(grandchild)
    pid, cpu = json.loads(wait_for("grandchild"))
    say(grandchild_pid=pid, grandchild_cpu=cpu, main_cpu=cpu_self_and_children())


def job_straggler() -> None:
    """Leave a daemonised grandchild sleeping and exit at once."""
    daemonise(lambda: (write_atomically("pid", str(os.getpid())), time.sleep(600)))
    say(straggler_pid=int(wait_for("pid")))


def job_spin() -> None:
    """Burn CPU in a daemonised grandchild and in the main process, forever."""
    daemonise(lambda: (write_atomically("pid", str(os.getpid())), burn(1e9)))
    say(main_pid=os.getpid(), spinner_pid=int(wait_for("pid")))
    burn(1e9)


def job_sleep() -> None:
    """Sleep (with a sleeping daemonised grandchild) until killed."""
    daemonise(lambda: (write_atomically("pid", str(os.getpid())), time.sleep(600)))
    say(main_pid=os.getpid(), sleeper_pid=int(wait_for("pid")))
    time.sleep(600)


def job_work(seconds: str) -> None:
    """Read the input, burn ``seconds`` of CPU, write the input back upper-cased
    (a job that does a little work and ends by itself)."""
    data = sys.stdin.buffer.read()
    burn(float(seconds))
    sys.stdout.buffer.write(data.upper())


def job_echo() -> None:
    """Copy stdin to stdout."""
    sys.stdout.buffer.write(sys.stdin.buffer.read())


def job_reverse_file(src: str, dst: str) -> None:
    """Write the file ``src`` reversed to the file ``dst`` (``-``: stdout)."""
    with open(src, "rb") as fh:
        data = fh.read()
    if dst == "-":
        sys.stdout.buffer.write(data[::-1])
        return
    with open(dst, "wb") as fh:
        fh.write(data[::-1])


def job_whoami() -> None:
    """Who and where the job is: ids, groups, argv, environment, work dir, stdin."""
    cwd = os.getcwd()
    st = os.stat(cwd)
    say(
        uid=os.getuid(),
        euid=os.geteuid(),
        gid=os.getgid(),
        groups=os.getgroups(),
        argv=sys.argv,
        env=dict(os.environ),
        cwd=cwd,
        cwd_mode=st.st_mode & 0o7777,
        cwd_uid=st.st_uid,
        stdin=sys.stdin.buffer.read().decode("latin-1"),
    )


def job_flood(out: str, err: str) -> None:
    """Write ``out`` bytes to stdout and ``err`` bytes to stderr."""
    sys.stdout.buffer.write(b"o" * int(out))
    sys.stdout.flush()
    sys.stderr.buffer.write(b"e" * int(err))
    sys.stderr.flush()


def job_exit(code: str) -> None:
    sys.stdout.write("bye\n")
    sys.stdout.flush()
    os._exit(int(code))


def job_signal(signame: str) -> None:
    os.kill(os.getpid(), getattr(signal, signame))


def job_symlink_output(target: str) -> None:
    """Make the output file a symbolic link to ``target`` (which the job
    cannot read itself)."""
    os.symlink(target, "output")


def main() -> None:
    name, *args = sys.argv[1:]
    globals()[f"job_{name}"](*args)


if __name__ == "__main__":
    main()
