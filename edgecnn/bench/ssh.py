"""Run the benchmark on a Linux board (Raspberry Pi and the like) over SSH.

``--device ssh://user@host[:port]`` reaches the board with the system
``ssh`` and ``scp``: no Python SSH library, so everything the user already
set up for ``ssh user@host`` (keys, agent, ``~/.ssh/config`` aliases, jump
hosts) works unchanged. Every command is an argument list; the command run
on the board is ``shlex.join(argv)``, so file names reach the remote shell
quoted.

What the board needs: Python 3 with numpy and the runtime of each artifact
(``python3 -m pip install onnxruntime``, ``executorch`` or ``openvino``; all
publish aarch64 wheels). Never edgecnn itself: ``put`` copies the artifacts
and the single-file runner into a fresh ``mktemp -d`` folder, which
``close`` removes.

SSH runs in batch mode, so it never stops to ask for a password or to
confirm a host key it has not seen (new keys are accepted and remembered,
changed ones refused): an unreachable board, a refused login or a dead
connection each end in one line saying what to do.

Options, for a key or a known-hosts file of its own (the tests use both):

- ``EDGECNN_SSH_OPTS``: extra ``ssh``/``scp`` options, split like a shell
  would (``-i ~/.ssh/pi_key -o UserKnownHostsFile=/tmp/kh``); they come
  before edgecnn's own, so they win where both set an option.
- ``EDGECNN_SSH_PYTHON``: the interpreter on the board (default ``python3``),
  e.g. ``/home/pi/venv/bin/python`` for a virtual environment.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from edgecnn.bench.runner import install_steps
from edgecnn.errors import UserError

# Printed by the board's Python: its version and, per module asked for, its
# version or null when it cannot be imported. Sent as one quoted argument.
_PROBE = """\
import importlib, json, platform, sys
mods = {}
for name in sys.argv[1:]:
    try:
        m = importlib.import_module(name)
        mods[name] = str(getattr(m, "__version__", "") or "installed")
    except Exception:
        mods[name] = None
print(json.dumps({"python": platform.python_version(), "machine": platform.machine(), "modules": mods}))
"""

# pip package for each module the runner imports.
PIP_PACKAGES = {"numpy": "numpy", "onnxruntime": "onnxruntime", "openvino": "openvino", "executorch": "executorch"}


def parse_ssh_url(url: str) -> tuple[str | None, str, int | None]:
    """``ssh://user@host[:port]`` -> (user, host, port); user and port are None when not given.

    Raises:
        UserError: not an ssh:// URL, no host, a password in it, a path, or a bad port.
    """
    shape = "write it as ssh://user@host or ssh://user@host:port"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UserError(f"--device {url}: {e}; {shape}") from None
    if parts.scheme != "ssh" or not parts.hostname:
        raise UserError(f"--device {url}: not an SSH address; {shape}")
    if parts.password is not None:
        raise UserError(f"--device {url}: passwords are not accepted in the address; "
                        "set up key authentication (ssh-copy-id) and leave the password out")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UserError(f"--device {url}: unexpected text after the host; {shape}")
    return parts.username, parts.hostname, port


class SSH:
    """A Linux board reached with the system ``ssh``/``scp`` (the Transport of ``transport.py``).

    Args:
        url: ``ssh://user@host[:port]``.
        timeout: seconds allowed to connect, and for each short command
            (probe, mkdir, cleanup); copies get more time per megabyte.
        options: extra ssh options (after ``EDGECNN_SSH_OPTS``), e.g. ``["-i", key]``.
        python: the interpreter argv on the board (default ``EDGECNN_SSH_PYTHON`` or ``python3``).

    Raises:
        UserError: a malformed URL (see ``parse_ssh_url``).
    """

    def __init__(self, url: str, timeout: float = 30, options: list[str] | None = None,
                 python: list[str] | None = None):
        self.user, self.host, self.port = parse_ssh_url(url)
        self.dest = f"{self.user}@{self.host}" if self.user else self.host
        netloc = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        login = f"{self.user}@" if self.user else ""
        self.device = f"ssh://{login}{netloc}" + (f":{self.port}" if self.port else "")
        self.timeout = float(timeout)
        self.python = list(python) if python else shlex.split(os.environ.get("EDGECNN_SSH_PYTHON") or "python3")
        if not self.python or self.python[0].startswith("~"):
            # The command reaches the board quoted, so its shell would not expand the tilde.
            raise UserError(f"EDGECNN_SSH_PYTHON={shlex.join(self.python)!s}: give the board's interpreter as a "
                            "name on its PATH or an absolute path (/home/pi/venv/bin/python); ~ is not expanded")
        # ssh keeps the first value it sees for an option, so the user's come first and win.
        user_opts = shlex.split(os.environ.get("EDGECNN_SSH_OPTS", "")) + list(options or [])
        self._opts = [
            *user_opts,
            "-o", "BatchMode=yes",  # never a password or host-key prompt: fail instead of hanging
            "-o", f"ConnectTimeout={max(1, round(self.timeout))}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",  # a dead link ends in ~15 s
            "-o", "StrictHostKeyChecking=accept-new",
            "-o", "LogLevel=ERROR",  # no "Permanently added ..." chatter on stderr
        ]
        if self.port:
            self._opts += ["-o", f"Port={self.port}"]  # one spelling for ssh (-p) and scp (-P)
        self.folder: str | None = None
        self.info: dict | None = None  # what check() found: python version, machine, modules

    # -- commands -------------------------------------------------------------------------

    def _ssh(self, argv: list[str]) -> list[str]:
        """The local ``ssh`` argv that runs ``argv`` on the board."""
        return ["ssh", *self._opts, "--", self.dest, shlex.join(argv)]

    def popen(self, argv: list[str]) -> subprocess.Popen:
        """Start ``argv`` on the board; text-mode pipes to its stdin, stdout and stderr.

        The remote process sees end-of-file on stdin when this one is closed or
        killed. Connection failures show up as ssh's exit status 255 and its
        stderr: pass them to ``explain``.
        """
        self.check()
        return subprocess.Popen(self._ssh(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1)

    def run(self, argv: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run ``argv`` on the board and capture its output (text).

        A non-zero exit of the remote command is returned, not raised.

        Raises:
            UserError: the board cannot be reached or the login is refused, or
                the command did not finish within ``timeout`` seconds.
        """
        self.check()
        return self._run(argv, timeout)

    def _run(self, argv: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
        timeout = self.timeout if timeout is None else timeout
        # ssh's ConnectTimeout bounds connecting (and the greeting); ``timeout`` is for the command itself,
        # so a silent server is reported as such rather than as a slow command.
        limit = self.timeout + timeout + 5
        try:
            proc = subprocess.run(self._ssh(argv), capture_output=True, text=True, timeout=limit,
                                  stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise UserError("ssh is not installed here: install the OpenSSH client "
                            "(apt-get install openssh-client)") from None
        except subprocess.TimeoutExpired:
            shown = shlex.join(argv).splitlines()[0][:60]
            raise UserError(f"{self.device}: `{shown}` did not finish within {limit:.0f} s; "
                            "is the board overloaded or the link stalled? try again, or raise --timeout") from None
        self._raise_for_connection(proc.returncode, proc.stderr)
        return proc

    def explain(self, returncode: int | None, stderr: str) -> str | None:
        """One line saying why ssh failed, or None when it was the remote command that failed.

        ssh exits with 255 for its own failures (the remote command's status otherwise).
        """
        if returncode != 255:
            return None
        err = stderr or ""
        # ssh also exits 255 when the remote program was killed by a signal: that is the program's failure.
        crash = re.search(r"uncaught target signal \d+ \([^)]*\)|Segmentation fault|Illegal instruction|Bus error", err)
        if crash and not re.search(r"^ssh: |Permission denied|Connection (refused|closed|reset)", err, re.M):
            return f"{self.device}: the program crashed on the board ({crash.group(0)}); ssh itself worked"
        where = f"{self.host} port {self.port or 22}"
        if "Could not resolve hostname" in err:
            return f"{self.device}: cannot resolve host name {self.host!r}: check the spelling, or use its IP address"
        if "Connection refused" in err:
            return (f"{self.device}: connection refused by {where}: is the SSH server running on the board "
                    "(sudo systemctl enable --now ssh) and is the port right?")
        if "timed out" in err and "connect to host" in err:
            return (f"{self.device}: no answer from {where} within {self.timeout:.0f} s: "
                    "is the board on and on this network?")
        if "banner exchange" in err or "kex_exchange_identification" in err:
            return (f"{self.device}: {where} took the connection but no SSH server answered "
                    f"within {self.timeout:.0f} s: is the port right, and is it sshd listening there?")
        if "No route to host" in err or "Network is unreachable" in err:
            return f"{self.device}: {where} is unreachable (no route): is the board on and on this network?"
        if "Permission denied" in err or "Too many authentication failures" in err:
            copy_id = shlex.join(["ssh-copy-id", *(["-p", str(self.port)] if self.port else []), self.dest])
            return (f"{self.device}: login refused (key authentication failed; passwords are never asked): "
                    f"set up key auth with `{copy_id}`, or name a key in EDGECNN_SSH_OPTS='-i KEY'")
        if "Host key verification failed" in err or "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
            return (f"{self.device}: the host key of {self.host} differs from the one in known_hosts: "
                    f"if the board was reinstalled, `ssh-keygen -R {self.host}` and try again")
        if "Timeout, server" in err or "not responding" in err or "Broken pipe" in err:
            return f"{self.device}: the connection to {where} was lost (no answer for 15 s); try again"
        last = next((ln.strip() for ln in reversed(err.strip().splitlines()) if ln.strip()), "no message")
        return f"{self.device}: ssh failed: {last}"

    def _raise_for_connection(self, returncode: int, stderr: str) -> None:
        line = self.explain(returncode, stderr)
        if line:
            raise UserError(line)

    # -- checks -----------------------------------------------------------------------------

    def check(self, modules: tuple[str, ...] = ()) -> dict:
        """Connect once and make sure the board's Python runs; report it and which ``modules`` import.

        The first call (any command triggers it) proves the connection and the
        interpreter; later calls with ``modules`` ask again for those.

        Returns:
            ``{"python": "3.11.2", "machine": "aarch64", "modules": {name: version or None}}``.

        Raises:
            UserError: unreachable, login refused, time-out, or no Python 3 on the board.
        """
        if self.info is not None and not modules:
            return self.info
        proc = self._run([*self.python, "-c", _PROBE, *modules])
        if proc.returncode != 0:
            err = proc.stderr.strip()
            shown = shlex.join(self.python)
            if proc.returncode == 127 or "not found" in err or "No such file" in err:
                fix = self.ssh_hint(["sudo", "apt-get", "install", "-y", "python3", "python3-pip"])
                raise UserError(f"{self.device}: {shown} is not installed on the board: `{fix}` "
                                "(or set EDGECNN_SSH_PYTHON to the interpreter to use)")
            last = err.splitlines()[-1] if err else f"exit status {proc.returncode}"
            raise UserError(f"{self.device}: {shown} on the board failed to start: {last}")
        try:
            info = json.loads(proc.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            raise UserError(f"{self.device}: {shlex.join(self.python)} printed something unexpected "
                            f"({proc.stdout.strip()[:80]!r}); is it Python 3?") from None
        if not str(info.get("python", "")).startswith("3."):
            raise UserError(f"{self.device}: the board's {shlex.join(self.python)} is Python {info.get('python')}; "
                            "the runner needs Python 3 (set EDGECNN_SSH_PYTHON=python3)")
        self.info = info if self.info is None else {**self.info, "modules": {**self.info["modules"], **info["modules"]}}
        return info

    def ssh_hint(self, argv: list[str]) -> str:
        """``ssh [-p PORT] user@host ARGV...``: a command to show the user, run from here."""
        port = ["-p", str(self.port)] if self.port else []
        return shlex.join(["ssh", *port, self.dest, *argv])

    def pip_command(self, steps: list[str]) -> str:
        """The command, run from here, that makes the board's interpreter run ``pip install S`` for each step."""
        if len(steps) == 1:
            return self.ssh_hint([*self.python, "-m", "pip", "install", *steps[0].split()])
        pip = shlex.join([*self.python, "-m", "pip", "install"])
        return self.ssh_hint([" && ".join(f"{pip} {s}" for s in steps)])

    def missing(self, modules: tuple[str, ...]) -> dict[str, str]:
        """Of ``modules``, those the board's Python cannot import, each with the pip command that fixes it."""
        found = self.check(tuple(modules))["modules"]
        machine = (self.info or {}).get("machine")
        return {m: self.pip_command(install_steps(PIP_PACKAGES.get(m, m), machine or "unknown"))
                for m in modules if found.get(m) is None}

    # -- files ------------------------------------------------------------------------------

    def put(self, files: list[Path]) -> str:
        """Copy ``files`` into a fresh folder on the board (``mktemp -d``); returns its path there.

        Every call copies into the same folder (made on the first call).

        Raises:
            UserError: a local file is missing, two files share a name, the
                folder cannot be made, or the copy fails or times out.
        """
        from edgecnn.bench.transport import checked_files

        files = checked_files(files, self.device)
        self.check()
        if self.folder is None:
            proc = self._run(["mktemp", "-d", "-t", "edgecnn-remote-XXXXXXXX"])
            folder = proc.stdout.strip()
            if proc.returncode != 0 or not folder.startswith("/") or "edgecnn-remote-" not in folder:
                raise UserError(f"{self.device}: could not make a working folder with mktemp -d: "
                                f"{(proc.stderr.strip() or folder)[:120]}; is /tmp writable on the board?")
            self.folder = folder
        if files:
            self._scp(files)
        return self.folder

    def _scp(self, files: list[Path]) -> None:
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        timeout = self.timeout + 5 * size_mb  # 200 kB/s is the slowest Wi-Fi worth waiting for
        host = f"[{self.host}]" if ":" in self.host else self.host
        target = f"{self.user}@{host}" if self.user else host
        argv = ["scp", "-q", *self._opts, "--", *map(str, files), f"{target}:{self.folder}/"]
        for attempt in (argv, [argv[0], "-O", *argv[1:]]):
            try:
                proc = subprocess.run(attempt, capture_output=True, text=True, timeout=timeout,
                                      stdin=subprocess.DEVNULL)
            except FileNotFoundError:
                raise UserError("scp is not installed here: install the OpenSSH client "
                                "(apt-get install openssh-client)") from None
            except subprocess.TimeoutExpired:
                raise UserError(f"{self.device}: copying {size_mb:.1f} MB did not finish within {timeout:.0f} s; "
                                "is the link that slow? try again") from None
            if proc.returncode == 0:
                return
            # scp speaks SFTP since OpenSSH 9; boards without an SFTP server need the old protocol (-O).
            if "subsystem request failed" not in proc.stderr and "sftp" not in proc.stderr.lower():
                break
        self._raise_for_connection(proc.returncode, proc.stderr)
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit status {proc.returncode}"
        raise UserError(f"{self.device}: copying files to {self.folder} failed: {last}")

    def close(self) -> None:
        """Remove the working folder on the board; never raises (it runs while other errors propagate)."""
        folder, self.folder = self.folder, None
        if not folder:
            return
        try:
            proc = self._run(["rm", "-rf", "--", folder])
            if proc.returncode != 0:
                raise UserError(proc.stderr.strip()[:120])
        except UserError as e:
            print(f"warning: {self.device}: could not remove {folder} on the board: {e}", file=sys.stderr)

    def __enter__(self) -> "SSH":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
