"""child and worker enforcement: real processes and threads, in a fresh process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

NO_CHILDREN = """
import os
def children():
    try:
        return os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return "none"
"""


def denied(permission: str, resource: str | None) -> dict[str, Any]:
    return {
        "denied": True,
        "permission": permission,
        "resource": resource,
        "code": "ERR_ACCESS_DENIED",
    }


def program(name: str) -> str:
    found = shutil.which(name)
    assert found is not None
    return found


def test_starting_programs_is_denied_and_nothing_runs(enforced: Any, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    out = enforced(
        f"""
        import os, pty, subprocess, sys
        marker = {str(marker)!r}
        attempt("run", lambda: subprocess.run(["touch", marker]))
        attempt("true", lambda: subprocess.run(["true"]))
        attempt("shell", lambda: subprocess.run("touch " + marker, shell=True))
        attempt("popen_str", lambda: subprocess.Popen("true"))
        attempt("python_c", lambda: subprocess.run([sys.executable, "-c", "open(marker, 'w')"]))
        attempt("relative", lambda: subprocess.run(["./bin/tool"], cwd="/usr"))
        attempt("check_output", lambda: subprocess.check_output(["touch", marker], cwd="/"))
        attempt("system", lambda: os.system("touch " + marker))
        attempt("popen", lambda: os.popen("touch " + marker).read())
        attempt("execv", lambda: os.execv({program("touch")!r}, ["touch", marker]))
        attempt("execvp", lambda: os.execvp("touch", ["touch", marker]))
        attempt("posix_spawnp", lambda: os.posix_spawnp("touch", ["touch", marker], os.environ))
        attempt("pty", lambda: pty.spawn(["touch", marker]))
        attempt("children", children)
        attempt("still_here", lambda: "yes")
        """,
        {"child": False},
        setup=NO_CHILDREN,
    )
    touch = program("touch")
    for label in ("run", "check_output", "system", "popen", "execv", "execvp", "posix_spawnp"):
        assert out[label] == denied("ChildProcess", touch), label
    assert out["shell"] == denied("ChildProcess", touch)  # the command's first word
    assert out["pty"] == denied("ChildProcess", touch)
    assert out["true"] == denied("ChildProcess", program("true"))
    assert out["popen_str"] == denied("ChildProcess", program("true"))
    assert out["python_c"] == denied("ChildProcess", sys.executable)
    assert out["relative"] == denied("ChildProcess", "/usr/bin/tool")
    assert out["children"] == {"denied": False, "value": "'none'"}
    assert out["still_here"] == {"denied": False, "value": "'yes'"}  # exec did not replace us
    assert not marker.exists()


def test_fork_and_multiprocessing_are_denied(enforced: Any) -> None:
    out = enforced(
        """
        import multiprocessing, os
        def spawned(method):
            process = multiprocessing.get_context(method).Process(target=os.getpid)
            process.start()
            process.join()
            return process.exitcode
        attempt("fork", os.fork)
        attempt("forkpty", os.forkpty)
        attempt("mp_fork", lambda: spawned("fork"))
        attempt("mp_spawn", lambda: spawned("spawn"))
        attempt("mp_forkserver", lambda: spawned("forkserver"))
        attempt("children", children)
        """,
        {"child": False},
        setup=NO_CHILDREN,
    )
    assert out["fork"] == denied("ChildProcess", None)
    assert out["forkpty"] == denied("ChildProcess", None)
    assert out["mp_fork"] == denied("ChildProcess", None)
    assert out["mp_spawn"] == denied("ChildProcess", sys.executable)
    assert out["mp_forkserver"] == denied("ChildProcess", sys.executable)
    assert out["children"] == {"denied": False, "value": "'none'"}
    assert out.stdout.count('"fork"') == 1  # printed by this process only
    assert out.returncode == 0


def test_kill_of_another_process_is_denied_but_not_of_our_own(enforced: Any) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        out = enforced(
            f"""
            import os, signal
            attempt("kill", lambda: os.kill({victim.pid}, signal.SIGTERM))
            attempt("killpg", lambda: os.killpg(os.getpgrp(), 0))
            attempt("group", lambda: os.kill(0, 0))
            attempt("self", lambda: os.kill(os.getpid(), 0))
            """,
            {"child": False},
        )
        assert out["kill"] == denied("ChildProcess", str(victim.pid))
        assert out["killpg"]["resource"] is not None
        assert out["killpg"] == denied("ChildProcess", out["killpg"]["resource"])
        assert out["group"] == denied("ChildProcess", "0")
        assert out["self"] == {"denied": False, "value": "None"}
        assert victim.poll() is None  # still alive
    finally:
        victim.kill()
        victim.wait()


def test_granted_child_processes_work(enforced: Any, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    out = enforced(
        f"""
        import multiprocessing, os, subprocess
        attempt("run", lambda: subprocess.run(["touch", {str(marker)!r}]).returncode)
        attempt("system", lambda: os.system("true"))
        def fork():
            pid = os.fork()
            if pid == 0:
                os._exit(7)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        attempt("fork", fork)
        process = multiprocessing.get_context("spawn").Process(target=os.getpid)
        attempt("spawn", lambda: (process.start(), process.join(), process.exitcode)[2])
        """,
        {"child": True, "fs_read": True, "fs_write": True},
    )
    assert out["run"] == {"denied": False, "value": "0"}
    assert out["system"] == {"denied": False, "value": "0"}
    assert out["fork"] == {"denied": False, "value": "7"}
    assert out["spawn"] == {"denied": False, "value": "0"}
    assert marker.exists()


WORK = """
import threading
ran = []
def work(value=1):
    ran.append(value)
    return value
"""


def test_thread_start_is_denied_promptly_and_cleanly(enforced: Any) -> None:
    out = enforced(
        """
        import _thread, asyncio, concurrent.futures, threading, time
        thread = threading.Thread(target=work)
        started = time.monotonic()
        attempt("thread", thread.start)
        attempt("prompt", lambda: time.monotonic() - started < 5)
        attempt("alive", thread.is_alive)
        attempt("retry", thread.start)
        attempt("timer", lambda: threading.Timer(0, work).start())
        attempt("raw", lambda: _thread.start_new_thread(work, ()))
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
        attempt("submit", lambda: pool.submit(work).result(timeout=5))
        pool.shutdown(wait=True)
        loop = asyncio.new_event_loop()  # asyncio.run would also start its executor's shutdown
        attempt("to_thread", lambda: loop.run_until_complete(asyncio.to_thread(work)))
        attempt("ran", lambda: ran)
        attempt("threads", threading.active_count)
        """,
        {"worker": False},
        setup=WORK,
        timeout=30,
    )
    for label in ("thread", "retry", "raw"):
        assert out[label] == denied("WorkerThreads", "__main__.work"), label
    assert out["timer"] == denied("WorkerThreads", "threading.Timer.run")
    assert out["submit"] == denied("WorkerThreads", "concurrent.futures.thread._worker")
    assert out["to_thread"] == denied("WorkerThreads", "concurrent.futures.thread._worker")
    assert out["prompt"] == {"denied": False, "value": "True"}
    assert out["alive"] == {"denied": False, "value": "False"}
    assert out["ran"] == {"denied": False, "value": "[]"}
    assert out["threads"] == {"denied": False, "value": "1"}
    assert out.returncode == 0  # and the interpreter exited without waiting on a thread


def test_subinterpreter_is_denied(enforced: Any) -> None:
    name = "_interpreters" if sys.version_info >= (3, 13) else "_xxsubinterpreters"
    out = enforced(
        f'import {name}\nattempt("create", {name}.create)\n',
        {"worker": False},
    )
    assert out["create"] == denied("WorkerThreads", "subinterpreter")


def test_granted_threads_work(enforced: Any) -> None:
    out = enforced(
        """
        import asyncio, concurrent.futures
        thread = threading.Thread(target=work, args=(2,))
        attempt("thread", lambda: (thread.start(), thread.join())[1])
        with concurrent.futures.ThreadPoolExecutor() as pool:
            attempt("submit", lambda: pool.submit(work, 3).result(timeout=10))
        attempt("to_thread", lambda: asyncio.run(asyncio.to_thread(work, 4)))
        attempt("ran", lambda: sorted(ran))
        """,
        {"worker": True},
        setup=WORK,
        timeout=30,
    )
    assert out["thread"] == {"denied": False, "value": "None"}
    assert out["submit"] == {"denied": False, "value": "3"}
    assert out["to_thread"] == {"denied": False, "value": "4"}
    assert out["ran"] == {"denied": False, "value": "[2, 3, 4]"}
