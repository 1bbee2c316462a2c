"""SIGUSR2 binary upgrade (issue 4), HTTP and HTTPS: the binary at the same path starts with
the same arguments, adopts the listening sockets, reports ready, and the old
process drains; under steady load nothing fails and no connect is refused.
A new binary that cannot start leaves the old one serving, with the reason
logged."""
import os
import re
import shutil
import signal
import time

import pytest

from conftest import SLOWDOWN, TIDEGATE, app_manifests
from lifecycle_util import Load, Proc, subreaper, wait_pid


def setup_dir(tmp_path, backend_port):
    mdir = tmp_path / "manifests"
    mdir.mkdir()
    for name, text in app_manifests([backend_port]).items():
        (mdir / name).write_text(text)
    binary = tmp_path / "bin" / "tidegate"
    binary.parent.mkdir()
    shutil.copy2(TIDEGATE, binary)
    return str(mdir), str(binary)


def replace_binary(path, source=None, script=None):
    """Replaces the file at path the way a package upgrade does (rename over:
    the running process keeps its old file)."""
    tmp = path + ".new"
    if script is not None:
        with open(tmp, "w") as f:
            f.write(script)
    else:
        shutil.copy2(source, tmp)
    os.chmod(tmp, 0o755)
    os.rename(tmp, path)


def upgrade(proc, log_from):
    """SIGUSR2 to proc; returns the new pid once the old one says it is ready."""
    proc.proc.send_signal(signal.SIGUSR2)
    m = proc.wait_log(r"upgrade: pid (\d+) is ready; this process \(pid (\d+)\) stops accepting",
                      after=log_from)
    assert int(m.group(2)) == proc.proc.pid
    return int(m.group(1))


def test_sigusr2_upgrade_under_load(tmp_path, backend):
    if not os.access(TIDEGATE, os.X_OK):
        pytest.skip(f"{TIDEGATE} not built")
    b = backend()
    mdir, binary = setup_dir(tmp_path, b.port)
    with subreaper():
        old = Proc(binary, tmp_path, mdir, workers=1,
                   args=["--shutdown-grace-period", "1"])
        new_pid = newer_pid = None
        load = Load(old.port, conns=16).start()
        # HTTPS too: its listening socket is handed over the same way, and
        # each HTTPS connection to the old process must end with
        # close_notify + FIN after a complete response.
        tload = Load(old.https_port, conns=6, tls=True).start()
        try:
            time.sleep(0.5)
            # The file at the binary's path is replaced first, as a package
            # upgrade does; the new one runs 2 workers (more than the old
            # process's sockets: the second opens one more in the group).
            replace_binary(binary, script=f"#!/bin/sh\nexec {TIDEGATE} \"$@\" --workers 2\n")
            mark = len(old.stderr())
            new_pid = upgrade(old, mark)
            # The old process drains and exits 0; the new one serves.
            assert old.proc.wait(15 * SLOWDOWN) == 0
            log = old.stderr()
            assert f"adopted 1 listening socket on port {old.port}" in log, log[-3000:]
            assert f"serving http on port {old.port} (2 workers)" in log, log[-3000:]
            ok_before, tok_before = load.ok, tload.ok
            time.sleep(0.5)
            assert load.ok > ok_before  # still served, by the new process alone
            assert tload.ok > tok_before
            # It can be upgraded again (the handover left nothing behind).
            mark = len(old.stderr())
            os.kill(new_pid, signal.SIGUSR2)
            m = old.wait_log(rf"upgrade: pid (\d+) is ready; this process \(pid {new_pid}\)",
                             after=mark, watch=False)
            newer_pid = int(m.group(1))
            assert wait_pid(new_pid, 15) == 0
            new_pid = None
            time.sleep(0.5)
            load.stop()
            tload.stop()
            load.assert_clean()
            tload.assert_clean()
            assert tload.connects > 6  # the drains made HTTPS clients reconnect
            assert b.requests >= load.ok + tload.ok
            # /healthz and /metrics come from the newest process now.
            assert old.admin("/healthz") == (200, "ok\n")
            assert "tidegate_draining 0" in old.admin("/metrics")[1]
            old.check_stderr()
        finally:
            load.stop()
            tload.stop()
            for pid in (new_pid, newer_pid):
                if pid:
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            statuses = [wait_pid(pid, 15) for pid in (new_pid, newer_pid) if pid]
            if old.proc.poll() is None:
                old.stop()
        assert statuses == [0]
        assert "stopped" in old.stderr().split("\n")[-2]


def test_failed_upgrade_keeps_the_old_process_serving(tmp_path, backend):
    if not os.access(TIDEGATE, os.X_OK):
        pytest.skip(f"{TIDEGATE} not built")
    b = backend()
    mdir, binary = setup_dir(tmp_path, b.port)
    with subreaper():
        old = Proc(binary, tmp_path, mdir, workers=3)
        load = Load(old.port, conns=8).start()
        new_pid = None
        try:
            time.sleep(0.3)
            # 1. a broken build at the binary's path
            replace_binary(binary, script="#!/bin/sh\necho 'broken build' >&2\nexit 3\n")
            mark = len(old.stderr())
            old.proc.send_signal(signal.SIGUSR2)
            # (the script may exit before or after it was handed the sockets)
            old.wait_log(r"upgrade failed: new process \d+ exited with status 3 before it was "
                         r"ready( \(handing the sockets over failed: .*\))?; this process keeps "
                         r"serving", after=mark)
            assert "broken build" in old.stderr()[mark:]
            # 2. no binary at all
            os.unlink(binary)
            mark = len(old.stderr())
            old.proc.send_signal(signal.SIGUSR2)
            old.wait_log(r"upgrade failed: .*No such file or directory; this process keeps serving",
                         after=mark)
            # 3. a real binary that gets the sockets but cannot serve (a bad
            #    admin address): it says why before exiting
            replace_binary(binary, script=f"#!/bin/sh\nexec {TIDEGATE} \"$@\" --admin-listen nowhere\n")
            mark = len(old.stderr())
            old.proc.send_signal(signal.SIGUSR2)
            old.wait_log(r"upgrade failed: new process \d+: cannot serve --admin-listen nowhere: "
                         r".*\(exited with status 1\); this process keeps serving", after=mark)
            replace_binary(binary, source=TIDEGATE)
            assert old.proc.poll() is None
            assert old.admin("/healthz") == (200, "ok\n")
            # 4. a good one afterwards still works, even with fewer workers
            #    (a wrapper at the binary's path adds --workers 1): its one
            #    worker accepts on all 3 sockets of the old process ...
            replace_binary(binary, script=f"#!/bin/sh\nexec {TIDEGATE} \"$@\" --workers 1\n")
            mark = len(old.stderr())
            new_pid = upgrade(old, mark)
            assert old.proc.wait(15 * SLOWDOWN) == 0
            assert f"adopted 3 listening sockets on port {old.port}" in old.stderr()[mark:]
            time.sleep(0.3)
            # ... and hands all 3 on in turn (it runs the real binary now:
            # /proc/self/exe, with the same arguments, so 1 worker again)
            mark = len(old.stderr())
            os.kill(new_pid, signal.SIGUSR2)
            m = old.wait_log(rf"upgrade: pid (\d+) is ready; this process \(pid {new_pid}\)",
                             after=mark, watch=False)
            assert wait_pid(new_pid, 15) == 0
            new_pid = int(m.group(1))
            assert f"adopted 3 listening sockets on port {old.port}" in old.stderr()[mark:]
            time.sleep(0.3)
            load.stop()
            load.assert_clean()
        finally:
            load.stop()
            if new_pid:
                os.kill(new_pid, signal.SIGTERM)
                assert wait_pid(new_pid, 15) == 0
            if old.proc.poll() is None:
                old.stop()
        old.check_stderr()
