"""``--device ssh://... --runner PATH``: a user-built ``executor_runner`` on a Linux board, no torch there.

ExecuTorch's Python runtime links libtorch, and torch is the heavy part of a
Pi install (and on PyPI, only torch 2.9.1 is a CPU build for aarch64).
Embedded users run a ``.pte`` with ExecuTorch's C++ ``executor_runner``
instead. With ``--runner`` on an ``ssh://`` device, edgecnn pushes that
binary and the ``.pte`` files over scp and runs them exactly as on an Android
phone: the same worker (``adb.ExecutorRunner``, with its parser of the
runner's log) under the one bench driver (``api._measure``), so the same
rounds and rows; only the transport differs. The board's facts come from ``runner.py``'s
``device_info()`` when the board has Python, else from ``uname -m``.

Building ``executor_runner`` for a Raspberry Pi (64-bit Raspberry Pi OS) from
an ExecuTorch checkout at the tag of the installed package, natively on the
Pi or with an aarch64 cross toolchain::

    cmake -B cmake-out -DCMAKE_BUILD_TYPE=Release \\
        -DEXECUTORCH_BUILD_EXECUTOR_RUNNER=ON -DEXECUTORCH_BUILD_XNNPACK=ON \\
        -DEXECUTORCH_BUILD_KERNELS_QUANTIZED=ON -DEXECUTORCH_BUILD_EXTENSION_DATA_LOADER=ON \\
        -DEXECUTORCH_BUILD_EXTENSION_FLAT_TENSOR=ON -DEXECUTORCH_ENABLE_LOGGING=ON \\
        -DEXECUTORCH_PAL_DEFAULT=posix .
    cmake --build cmake-out -j4 --target executor_runner

Tested only with the stand-in ``tests/standins/executor_runner`` (a Python
script that prints what the C++ runner prints), not with a real C++ build.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgecnn.bench.worker import RUNNER  # only its device_info() is used here
from edgecnn.errors import UserError

_INFO = ("import json, sys; sys.path.insert(0, sys.argv[1]); from runner import device_info; "
         "print(json.dumps(device_info()))")


class SSHNative:
    """An ``ssh://`` board in the role ``adb.ADB`` plays for a phone: put, run, device_info, close."""

    where = "a Linux board"

    def __init__(self, device: str, timeout: float = 30):
        from edgecnn.bench.ssh import SSH

        self.ssh = SSH(device, timeout=timeout)
        self.device = self.ssh.device
        self.python = []
        self._runner_folder: str | None = None  # where runner.py was put (device_info runs after every round)

    def put(self, files: list[Path]) -> str:
        return self.ssh.put(files)

    def run(self, argv: list[str], timeout: float | None = None):
        return self.ssh.run(argv, timeout)

    def device_info(self) -> dict:
        """The board's facts as ``runner.device_info()`` reports them (emulation included); fewer without Python."""
        try:
            if self._runner_folder is None:
                self._runner_folder = self.ssh.put([RUNNER])
            folder = self._runner_folder
            proc = self.ssh.run([*self.ssh.python, "-c", _INFO, folder])
            info = json.loads(proc.stdout.strip().splitlines()[-1])
        except (UserError, ValueError, IndexError):
            proc = self.ssh.run(["uname", "-m"])
            machine = proc.stdout.strip() or None
            info = {"machine": machine, "device_desc": f"Linux board ({machine})" if machine else "Linux board"}
        info["abi"] = info.get("machine")
        return info

    def close(self) -> None:
        self.ssh.close()

    def __enter__(self) -> "SSHNative":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def native_transport(device: str, timeout: float):
    """The transport an ``executor_runner`` job opens for ``device``: ``adb.ADB`` or ``SSHNative``.

    Raises:
        UserError: another kind of device, or the device cannot be reached.
    """
    if device.startswith("ssh://"):
        return SSHNative(device, timeout)
    if device.startswith("adb://"):
        from edgecnn.bench.adb import ADB

        return ADB(device, timeout)
    raise UserError(f"--runner works with adb:// and ssh:// devices, not {device}")


__all__ = ["SSHNative", "native_transport"]
