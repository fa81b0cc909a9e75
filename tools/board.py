#!/usr/bin/env python3
"""An emulated arm64 "Raspberry Pi" on this machine, reached over real ssh: ``make board`` / ``make board-stop``.

What it is (nothing here is a stand-in):

* a Debian bookworm arm64 root (``debootstrap --arch=arm64 --variant=minbase``;
  its Python is 3.11.2, the Python of Raspberry Pi OS bookworm), run through
  qemu-user-static registered in binfmt_misc, so every program in it is the
  real aarch64 binary, executed instruction by instruction by qemu;
* its own OpenSSH server (the arm64 ``/usr/sbin/sshd`` of that root, started
  with ``chroot``), on a free loopback port, key login only, for a user ``pi``;
* the runtimes a Pi user installs, as the real aarch64 cp311 wheels from PyPI,
  in a virtual environment ``/opt/bench`` on the board (what docs/boards.md tells a
  Pi user to make): numpy, onnxruntime 1.32.0, openvino 2025.2.0, and for
  ExecuTorch the one PyPI-only pairing that runs without CUDA: torch 2.9.1
  (PyPI's aarch64 build of it is CPU-only) with executorch 1.0.1 (built for
  torch 2.9), installed ``--no-deps`` with torch's pure-Python dependencies.
  The wheels are installed from this machine (pip ``--platform
  manylinux_2_28_aarch64 --target``), which takes seconds; pip inside the
  emulated root takes minutes and, for executorch, tries to build coremltools.

Everything is cached outside the repository (``$EDGECNN_BOARD_CACHE``,
default ``/var/cache/edgecnn-board``): the root, the wheels, the keys. A second
``make board`` only mounts and starts sshd.

It prints shell lines for ``eval "$(make -s board)"``::

    export EDGECNN_BOARD=ssh://pi@127.0.0.1:PORT
    export EDGECNN_SSH_OPTS='-i KEY -o UserKnownHostsFile=FILE ...'
    export EDGECNN_SSH_PYTHON=/opt/bench/bin/python

Progress goes to stderr. It needs root (chroot, mount), qemu-user-static,
binfmt_misc and debootstrap; without one it says so in one line and exits 2.
It never reads or writes ``~/.ssh``: the keys and known_hosts are its own.

Latency measured on this board is the latency of qemu, not of an ARM CPU (it
is about 20-200x slower); the runner detects the emulation and every row says
so. Accuracy (``--check``), peak memory, the install itself and the import
of the runtimes are real.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("EDGECNN_BOARD_CACHE", "/var/cache/edgecnn-board"))
ROOT = CACHE / "root"
WHEELS = CACHE / "wheels"
STATE = CACHE / "state"
SUITE = "bookworm"
USER, UID = "pi", 1000
VENV = "/opt/bench"
SITE = f"{VENV}/lib/python3.11/site-packages"
PACKAGES = "python3,python3-venv,openssh-server"
# The board's runtimes (aarch64 cp311 wheels). executorch --no-deps: its declared dependencies include
# coremltools and a torch that pip would resolve to the CUDA build; these are what its runtime imports.
WHEEL_PINS = [
    "numpy==2.2.6", "onnxruntime==1.32.0", "openvino==2025.2.0", "openvino-telemetry==2025.2.0",
    "torch==2.9.1", "executorch==1.0.1",
    # torch's and executorch's pure-Python imports
    "filelock", "typing-extensions", "sympy==1.14.0", "mpmath", "networkx", "jinja2", "markupsafe", "fsspec",
    "packaging", "ruamel.yaml", "tabulate", "flatbuffers", "protobuf",
]
PLATFORMS = ["manylinux_2_36_aarch64", "manylinux_2_34_aarch64", "manylinux_2_31_aarch64",
             "manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64",
             "manylinux2014_aarch64", "linux_aarch64"]
MOUNTS = ["proc", "dev", "dev/pts", "sys"]
# Not the host's /sys: with it, onnxruntime 1.32.0's cpuinfo (pytorch/cpuinfo, ARM code path) reads the x86
# host's per-CPU folders and segfaults under qemu at dlopen. Without any /sys, every runtime warns that it
# cannot read the CPU lists, and OpenVINO's hwloc finds no topology and segfaults. So /sys is a small tmpfs
# holding copies of the host's CPU lists and per-CPU topology files only.
CPU_LISTS = ("possible", "present", "online", "kernel_max")
# The CPU qemu emulates: the Raspberry Pi 5's core. qemu 7.2's default ("max", SVE and all) makes
# OpenVINO 2025.2.0's JIT emit an instruction qemu cannot run (SIGILL at the first inference).
QEMU_CPU = "cortex-a76"


def say(msg: str) -> None:
    print(f"board: {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> "None":
    print(f"make board: {msg}", file=sys.stderr)
    sys.exit(2)


def mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources), else deb.debian.org."""
    for f in [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"),
              *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and "security" not in line:
                return next(w for w in words[1:] if not w.startswith("["))
    return "http://deb.debian.org/debian"


# -- what the machine must allow -------------------------------------------------------------------

def preflight() -> None:
    """Root, qemu-user-static, binfmt_misc with an aarch64 entry, debootstrap: each missing one is one line, exit 2."""
    if os.geteuid() != 0:
        fail("needs root (debootstrap, chroot and bind mounts); run it as root, e.g. sudo make board")
    if not shutil.which("qemu-aarch64-static") and not Path("/usr/libexec/qemu-binfmt/aarch64-binfmt-P").exists():
        fail("qemu-aarch64-static is not installed: apt-get install qemu-user-static binfmt-support debootstrap")
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        proc = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            fail(f"cannot mount binfmt_misc ({(proc.stderr.strip() or 'mount failed')[:160]}): this machine "
                 "(a container without the privilege?) cannot run arm64 programs under qemu")
    entry = binfmt / "qemu-aarch64"
    if not entry.exists() and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not entry.exists() or "enabled" not in entry.read_text():
        fail("no enabled qemu-aarch64 entry in /proc/sys/fs/binfmt_misc: apt-get install qemu-user-static "
             "binfmt-support, then update-binfmts --enable qemu-aarch64")
    if "F" not in next((ln.split()[1] for ln in entry.read_text().splitlines() if ln.startswith("flags:")), ""):
        fail("the qemu-aarch64 binfmt entry lacks the F (fix-binary) flag, so chroot cannot find qemu: "
             "use Debian's qemu-user-static, which registers it with F")
    if not shutil.which("debootstrap") and not (ROOT / ".edgecnn-root").exists():
        fail("debootstrap is not installed: apt-get install qemu-user-static binfmt-support debootstrap")


# -- building (cached) -----------------------------------------------------------------------------

def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()[-1]
        fail(f"`{shlex.join(argv)[:100]}` failed: {last[:200]}")
    return proc


def chroot(*argv: str, **kw) -> subprocess.CompletedProcess:
    return run(["chroot", str(ROOT), *argv], **kw)


def build_root() -> None:
    if (ROOT / ".edgecnn-root").exists():
        return
    tmp = CACHE / "root.tmp"
    if tmp.exists():
        if any(os.path.ismount(tmp / m) for m in MOUNTS):
            fail(f"{tmp} has mounts in it; unmount them (make board-stop) before rebuilding")
        shutil.rmtree(tmp)
    CACHE.mkdir(parents=True, exist_ok=True)
    src = mirror()
    say(f"debootstrap arm64 {SUITE} from {src} (about 3-6 minutes, once)")
    t0 = time.monotonic()
    run(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(tmp), src])
    tmp.rename(ROOT)
    (ROOT / ".edgecnn-root").write_text(json.dumps({"suite": SUITE, "mirror": src,
                                                    "seconds": round(time.monotonic() - t0)}) + "\n")
    say(f"root built in {time.monotonic() - t0:.0f} s")


def add_user() -> None:
    passwd = ROOT / "etc/passwd"
    if f"\n{USER}:" in "\n" + passwd.read_text():
        return
    with open(passwd, "a") as f:
        f.write(f"{USER}:x:{UID}:{UID}:edgecnn board:/home/{USER}:/bin/bash\n")
    with open(ROOT / "etc/group", "a") as f:
        f.write(f"{USER}:x:{UID}:\n")
    with open(ROOT / "etc/shadow", "a") as f:  # "*": no password, but not locked (sshd refuses locked accounts)
        f.write(f"{USER}:*:19000:0:99999:7:::\n")
    home = ROOT / "home" / USER
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, UID, UID)


def install_wheels() -> None:
    """The board's runtimes, from cached aarch64 wheels, into the board's venv (host pip, no emulation)."""
    stamp = ROOT / VENV.lstrip("/") / ".edgecnn-wheels"
    if stamp.exists() and stamp.read_text().split() == WHEEL_PINS:
        return
    t0 = time.monotonic()
    if not (ROOT / VENV.lstrip("/") / "bin/python").exists():
        say(f"python3 -m venv {VENV} on the board")
        chroot("python3", "-m", "venv", "--without-pip", VENV)
    plat = [w for p in PLATFORMS for w in ("--platform", p)]
    common = [*plat, "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--no-deps"]
    WHEELS.mkdir(parents=True, exist_ok=True)
    say("downloading the aarch64 wheels (cached in " + str(WHEELS) + ")")
    run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", *common, "-d", str(WHEELS),
         *WHEEL_PINS])
    site = ROOT / SITE.lstrip("/")
    say(f"installing them into {VENV} on the board")
    run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *common, "--no-index",
         "--find-links", str(WHEELS), "--upgrade", "--target", str(site), *WHEEL_PINS])
    stamp.write_text("\n".join(WHEEL_PINS) + "\n")
    say(f"wheels installed in {time.monotonic() - t0:.0f} s")


def keys() -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    os.chmod(STATE, 0o700)
    host = ROOT / "etc/ssh/edgecnn_host_ed25519"
    for key in (host, STATE / "client_ed25519"):
        if not key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgecnn-board", "-f", str(key)])
    ssh_dir = ROOT / "home" / USER / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    auth = ssh_dir / "authorized_keys"
    auth.write_text((STATE / "client_ed25519.pub").read_text())
    for p in (ssh_dir, auth):
        os.chown(p, UID, UID)
    os.chmod(auth, 0o600)


# -- running ---------------------------------------------------------------------------------------

def mounted(rel: str) -> bool:
    return os.path.ismount(ROOT / rel)


def mount_all() -> None:
    for rel in MOUNTS:
        if mounted(rel):
            continue
        if rel == "sys":
            run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=755", "edgecnn-board-sys", str(ROOT / rel)])
            cpu = ROOT / "sys/devices/system/cpu"
            cpu.mkdir(parents=True)
            for name in CPU_LISTS:
                shutil.copyfile(f"/sys/devices/system/cpu/{name}", cpu / name)
            for topo in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology"):
                (cpu / topo.parent.name / "topology").mkdir(parents=True)
                for f in topo.iterdir():
                    try:
                        shutil.copyfile(f, cpu / topo.parent.name / "topology" / f.name)
                    except OSError:
                        pass
        else:
            run(["mount", "--bind", f"/{rel}", str(ROOT / rel)])


def umount_all() -> None:
    for rel in reversed(MOUNTS):
        if mounted(rel):
            if subprocess.run(["umount", str(ROOT / rel)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(ROOT / rel)], capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_state() -> dict | None:
    try:
        state = json.loads((STATE / "board.json").read_text())
        os.kill(state["pid"], 0)
        with socket.create_connection(("127.0.0.1", state["port"]), timeout=2):
            return state
    except (OSError, ValueError, KeyError):
        return None


def start_sshd() -> dict:
    (ROOT / "run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    for attempt in range(3):
        port = free_port()
        (ROOT / "etc/ssh/edgecnn_sshd_config").write_text("\n".join([
            "ListenAddress 127.0.0.1", f"Port {port}", "HostKey /etc/ssh/edgecnn_host_ed25519",
            "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin no", "UsePAM no", f"AllowUsers {USER}", "StrictModes no",
            "Subsystem sftp internal-sftp", "PidFile /run/sshd.pid", "LogLevel INFO",
            f"SetEnv QEMU_CPU={QEMU_CPU}", ""]))
        log = open(STATE / "sshd.log", "w")
        proc = subprocess.Popen(["env", f"QEMU_CPU={QEMU_CPU}", "chroot", str(ROOT), "/usr/sbin/sshd", "-D", "-e", "-f",
                                 "/etc/ssh/edgecnn_sshd_config"], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60  # sshd under qemu takes a few seconds to start
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    state = {"pid": proc.pid, "port": port}
                    (STATE / "board.json").write_text(json.dumps(state) + "\n")
                    host_pub = (ROOT / "etc/ssh/edgecnn_host_ed25519.pub").read_text().split()
                    (STATE / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
                    return state
            except OSError:
                time.sleep(0.3)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    tail = (STATE / "sshd.log").read_text().strip().splitlines()[-1:] or ["no output"]
    fail(f"the board's sshd did not start: {tail[0][:200]}")


def exports(state: dict) -> str:
    opts = (f"-i {STATE / 'client_ed25519'} -o IdentitiesOnly=yes -o IdentityAgent=none "
            f"-o UserKnownHostsFile={STATE / 'known_hosts'} -o StrictHostKeyChecking=yes")
    return "\n".join([f"export EDGECNN_BOARD=ssh://{USER}@127.0.0.1:{state['port']}",
                      f"export EDGECNN_SSH_OPTS={shlex.quote(opts)}",
                      f"export EDGECNN_SSH_PYTHON={VENV}/bin/python"])


def start() -> int:
    preflight()
    # One builder at a time: .ci/run starts a cold build in the background while the tests run, and the
    # board test's own `start` waits here for it instead of building a second root beside it.
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _start()


def _start() -> int:
    state = read_state()
    if state is None:
        t0 = time.monotonic()
        build_root()
        add_user()
        install_wheels()
        keys()
        mount_all()
        state = start_sshd()
        say(f"sshd of the board listening on 127.0.0.1:{state['port']} ({time.monotonic() - t0:.0f} s); "
            "stop it with make board-stop")
    print(exports(state))
    return 0


def stop() -> int:
    if os.geteuid() != 0:
        fail("needs root (it unmounts the board's /proc, /sys and /dev)")
    try:
        state = json.loads((STATE / "board.json").read_text())
    except (OSError, ValueError):
        state = None
    if state:
        try:
            os.killpg(state["pid"], signal.SIGTERM)  # sshd and the sessions it started (its process group)
            for _ in range(50):
                os.kill(state["pid"], 0)
                time.sleep(0.1)
            os.killpg(state["pid"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        (STATE / "board.json").unlink(missing_ok=True)
    # Sessions sshd started have their own process groups: end every process whose root is the board's.
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / "root") == str(ROOT.resolve()):
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:
            pass
    if ROOT.exists():
        umount_all()
    say("stopped" if state else "not running")
    return 0


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "start"
    if cmd == "start":
        return start()
    if cmd == "stop":
        return stop()
    if cmd == "env":
        state = read_state()
        if state is None:
            fail("the board is not running: make board")
        print(exports(state))
        return 0
    print(f"usage: {Path(__file__).name} start|stop|env", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
