"""A real OpenSSH server on a loopback port, for the ``ssh://`` benchmark tests.

``/usr/sbin/sshd`` runs as a child process with its own config, host key and
authorized key, all in a temporary folder; it listens on 127.0.0.1 only and is
stopped at teardown. The client side gets ``EDGECNN_SSH_OPTS`` naming the
generated key and a fresh known_hosts file, so the user's ``~/.ssh`` is never
read or written. CI runs as root, hence ``PermitRootLogin prohibit-password``.

``.ci/run`` installs openssh-server. Without ``/usr/sbin/sshd`` the tests are
skipped on a developer machine, and fail under CI (``CI`` set), where a
missing server means the install step broke.
"""

from __future__ import annotations

import getpass
import os
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself, so it must be started by absolute path


@dataclass
class Server:
    """A running sshd and what a client needs to log in to it."""

    port: int
    user: str
    folder: Path
    key: Path  # the authorized private key
    known_hosts: Path
    log: Path

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def opts(self, key: Path | None = None) -> str:
        """``EDGECNN_SSH_OPTS`` for this server: our key only, our known_hosts, no user config."""
        return shlex.join(["-F", "/dev/null", "-i", str(key or self.key), "-o", "IdentitiesOnly=yes",
                           "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "IdentityAgent=none"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgecnn-test", "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"sshd did not accept connections on port {port} within {timeout} s:\n{log.read_text()}")


def start_sshd(folder: Path) -> tuple[Server, subprocess.Popen]:
    if not Path(SSHD).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{SSHD} is missing under CI: .ci/run should have installed openssh-server")
        pytest.skip(f"{SSHD} is missing (apt-get install openssh-server); CI runs these tests")
    folder.mkdir(parents=True, exist_ok=True)
    host_key = keygen(folder / "host_ed25519")
    key = keygen(folder / "client_ed25519")
    (folder / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    user = getpass.getuser()
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation folder; no systemd here
    for attempt in range(3):  # another process may take the free port before sshd binds it
        port = free_port()
        config = folder / "sshd_config"
        config.write_text("\n".join([
            "ListenAddress 127.0.0.1",
            f"Port {port}",
            f"HostKey {host_key}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}",
            f"PidFile {folder / 'sshd.pid'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "StrictModes no",  # the temp folder's permissions are not sshd's business here
            "UsePAM no",
            "Subsystem sftp internal-sftp",  # scp speaks SFTP since OpenSSH 9
            f"AllowUsers {user}",
            "LogLevel VERBOSE",
            "",
        ]))
        log = folder / f"sshd-{attempt}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        try:
            wait_for_port(port, proc, log)
        except RuntimeError:
            proc.kill()
            proc.wait()
            if attempt == 2:
                raise
            continue
        known = folder / "known_hosts"
        known.write_text("")
        return Server(port, user, folder, key, known, log), proc
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> Server:
    """A running sshd on 127.0.0.1 that accepts ``Server.key`` for the current user."""
    server, proc = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
