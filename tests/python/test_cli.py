"""The `ember` command: start a cluster in the background, connect to it
from drivers by address, read its status, stop it."""

from __future__ import annotations

import json
import os
import subprocess

from ember_test_support import EMBER_BIN, run_driver


def _ember(*args, env=None, timeout=60):
    return subprocess.run(
        check=False,
        args=[EMBER_BIN, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_start_connect_status_stop(tmp_path):
    env = dict(os.environ, EMBER_TMPDIR=str(tmp_path / "root"))
    started = _ember(
        "start",
        "--head",
        "--num-cpus",
        "2",
        "--num-gpus",
        "1",
        "--resources",
        '{"accel": 3}',
        "--object-store-memory",
        str(256 << 20),
        env=env,
    )
    assert started.returncode == 0, started.stderr + started.stdout
    assert "address" in started.stdout
    try:
        info = json.loads(
            (tmp_path / "root" / "session_latest" / "session.json").read_text()
        )
        mode = (
            os.stat(tmp_path / "root" / "session_latest" / "session.json").st_mode
            & 0o777
        )
        assert mode == 0o600, "the token file is private"

        # Two drivers, by "auto" and by address; both see the same cluster.
        code = """
            import ember
            ember.init(address=ADDRESS)
            @ember.remote
            def f(x):
                return x + 1
            print("RESULT", ember.get(f.remote(1)), ember.cluster_resources()["accel"])
            ember.shutdown()
        """
        for address in ("'auto'", repr(info["address"])):
            out = run_driver(code.replace("ADDRESS", address), env=env)
            assert "RESULT 2 3.0" in out.stdout, out.stdout + out.stderr

        via_env = run_driver(
            code.replace("ADDRESS", "None"),
            env=dict(env, EMBER_ADDRESS=info["address"]),
        )
        assert "RESULT 2 3.0" in via_env.stdout, via_env.stdout + via_env.stderr

        status = _ember("status", env=env)
        assert status.returncode == 0, status.stderr
        assert "CPU: 0.0 / 2.0" in status.stdout
        assert "GPU: 0.0 / 1.0" in status.stdout
        assert "accel: 0.0 / 3.0" in status.stdout
        assert "2 finished" in status.stdout or "3 finished" in status.stdout, (
            status.stdout
        )
        assert "Object store" in status.stdout
    finally:
        stopped = _ember("stop", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout
    assert not os.path.exists(info["socket"])
    gone = _ember("status", env=env)
    assert gone.returncode != 0 and "no running ember cluster" in gone.stderr


def test_connecting_to_a_missing_cluster_is_a_clear_error(tmp_path):
    out = run_driver(
        """
        import ember
        try:
            ember.init(address="127.0.0.1:1")
        except ConnectionError as e:
            print("ERROR", e)
        """,
        env={"EMBER_TMPDIR": str(tmp_path)},
    )
    assert "ERROR" in out.stdout, out.stdout + out.stderr


def test_bad_start_flags_are_refused(tmp_path):
    env = dict(os.environ, EMBER_TMPDIR=str(tmp_path))
    bad = _ember("start", "--head", "--resources", "not json", "--block", env=env)
    assert bad.returncode != 0 and "--resources" in bad.stderr
    bad = _ember("start", "--head", "--num-cpus", "-1", "--block", env=env)
    assert bad.returncode != 0
