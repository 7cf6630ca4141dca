"""A throwaway OpenSSH server on 127.0.0.1: its own config, host key and user key.

Started as ``sshd -D -e -f CONFIG`` (foreground, log to stderr) and stopped by its PID.
Clients use a matching ``ssh_config`` (no known_hosts, the throwaway identity), so scp,
sftp and rsync all go through the same server.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .common import stop_pid

SSHD = "/usr/sbin/sshd"


def available() -> str | None:
    """None when scp, sftp and sshd are all there, else what is missing."""
    missing = [t for t in ("ssh", "scp", "sftp", "ssh-keygen") if shutil.which(t) is None]
    if not Path(SSHD).exists():
        missing.append(SSHD + " (Debian: openssh-server)")
    return ", ".join(missing) if missing else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ThrowawaySshd:
    home: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def ssh_config(self) -> Path:
        return self.home / "ssh_config"

    @property
    def target(self) -> str:
        return "bench"  # the Host alias in ssh_config

    def start(self) -> ThrowawaySshd:
        home = self.home
        home.mkdir(parents=True, exist_ok=True)
        host_key, user_key = home / "host_ed25519", home / "user_ed25519"
        for key in (host_key, user_key):
            if not key.exists():
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
                )
        authorized = home / "authorized_keys"
        authorized.write_text((home / "user_ed25519.pub").read_text())
        authorized.chmod(0o600)
        # sshd cannot be handed a socket or report a port it chose, so it gets one that
        # was free a moment ago; should another process take it first, sshd fails to bind
        # and says so, and it is started again on another.
        for _attempt in range(5):
            self.port = free_port()
            self._configure(host_key, authorized)
            if self._launch():
                return self
        raise RuntimeError(f"sshd found no free port: {(home / 'sshd.log').read_text()}")

    def _configure(self, host_key: Path, authorized: Path) -> None:
        home = self.home
        user = getpass.getuser()
        (home / "sshd_config").write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {host_key}\n"
            f"AuthorizedKeysFile {authorized}\n"
            f"PidFile {home / 'sshd.pid'}\n"
            "StrictModes no\n"
            f"AllowUsers {user}\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "UseDNS no\n"
            "Compression no\n"
            "Subsystem sftp internal-sftp\n"
            "MaxStartups 100\n"
            "LogLevel ERROR\n"
        )
        self.ssh_config.write_text(
            f"Host {self.target}\n"
            "  HostName 127.0.0.1\n"
            f"  Port {self.port}\n"
            f"  User {user}\n"
            f"  IdentityFile {home / 'user_ed25519'}\n"
            "  IdentitiesOnly yes\n"
            "  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  LogLevel ERROR\n"
            "  Compression no\n"
            "  BatchMode yes\n"
        )

    def _launch(self) -> bool:
        """True once sshd accepts a login; False if its port was taken meanwhile."""
        home = self.home
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
        log = open(home / "sshd.log", "wb")  # noqa: SIM115 - lives as long as sshd
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(home / "sshd_config")], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                said = (home / "sshd.log").read_text()
                if "Address already in use" in said:
                    return False
                raise RuntimeError(f"sshd exited: {said}")
            try:
                subprocess.run(
                    ["ssh", "-F", str(self.ssh_config), self.target, "true"],
                    check=True,
                    capture_output=True,
                    timeout=10,
                )
                return True
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"sshd did not accept a login: {(home / 'sshd.log').read_text()}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc)
