"""How a run is shown: a rich progress bar on a terminal, lines on a pipe, or JSON events.

The driver reports through ``Reporter``; it never prints. Each method is one event.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

if TYPE_CHECKING:
    from rich.progress import TaskID


class Reporter:
    """Base reporter: says nothing. Subclasses show events their own way."""

    def event(self, kind: str, **fields: Any) -> None:
        pass

    def progress(self, sent: int) -> None:
        """Ciphertext bytes of the current attempt sent so far."""

    def close(self) -> None:
        pass


class LineReporter(Reporter):
    """One readable line per significant event (for pipes and logs)."""

    _FORMATS: ClassVar[dict[str, str]] = {
        "registered": "registered as {name} (client id {client_id})",
        "reconnected": "reconnected as {name}",
        "reconnect_denied": "the server does not know us (1606); registering again",
        "key_protected": "{file}: the key is now sealed with the passphrase given "
        "(scrypt + ChaCha20-Poly1305; {how})",
        "server_pinned": "trusting the server's key {fingerprint} from now on (known_servers)",
        "server_key_rotating": "server key rotating: now trusting {fingerprint} as well as "
        "{previous} ({file})",
        "server_key_rotated": "server key rotating: now trusting {fingerprint} instead of "
        "{previous} ({file})",
        "server_key_announced": "server key rotating: the server announces its next key "
        "{fingerprint}; the configured fingerprint {previous} must change to it when the "
        "server retires its current key",
        "resuming": "{file}: resuming at {percent}% (chunk {chunk} of {of})",
        "restarting": "{file}: the server kept nothing of the earlier attempt (expired, "
        "dropped by its limits on unfinished uploads, or never written); sending it all again",
        "connection_retry": "connection lost ({error}); reconnecting in {delay} s "
        "(attempt {retry}; giving up in {give_up_in} s)",
        "server_error": "server responded with an error; sending the request again ({attempt}/3)",
        "crc_mismatch": "{file}: CRC differs (attempt {attempt}); {action}",
        "file_verified": "{file}: stored and verified "
        "({size} bytes, check {cksum}, attempt {attempt})",
        "file_skipped": "{file}: skipped, {reason}",
        "skipped": "{path}: skipped, {reason}",
        "file_changed": "{file}: changed while it was being read; not sent",
        "folders": "sending {files} files ({bytes} bytes) and {empty_folders} empty folders",
    }

    #: A change of the trusted server key goes to stderr, beside the warnings.
    _TO_STDERR: ClassVar[frozenset[str]] = frozenset(
        {"server_key_rotating", "server_key_rotated", "server_key_announced"}
    )

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def event(self, kind: str, **fields: Any) -> None:
        template = self._FORMATS.get(kind)
        if template:
            stream = sys.stderr if kind in self._TO_STDERR else self.stream
            print(template.format(**fields) + _overall(fields), file=stream, flush=True)


def _overall(fields: dict[str, Any]) -> str:
    """' [3/10 files, 1200/5000 bytes]' when the event carries the run's totals."""
    if "files_total" not in fields:
        return ""
    return (
        f" [{fields['files_done']}/{fields['files_total']} files, "
        f"{fields['bytes_done']}/{fields['bytes_total']} bytes]"
    )


class JsonReporter(Reporter):
    """Newline-delimited JSON, one object per event, for programs."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._last_progress = 0.0
        self._file: str | None = None
        self._total = 0

    def event(self, kind: str, **fields: Any) -> None:
        if kind == "file_started":  # what the progress events that follow are about
            self._file, self._total = fields.get("file"), int(fields.get("content_size", 0))
        record = {"event": kind, "time": round(time.time(), 3), **fields}
        print(json.dumps(record), file=self.stream, flush=True)

    def progress(self, sent: int) -> None:
        """At most two a second, and always the last one of a file (sent == total)."""
        now = time.monotonic()
        if now - self._last_progress >= 0.5 or sent >= self._total:
            self._last_progress = now
            self.event("progress", file=self._file, sent=sent, total=self._total)


class BarReporter(LineReporter):
    """A progress bar with rate and ETA, for a terminal."""

    def __init__(self) -> None:
        # rich costs ~50 ms of start-up: loaded only when a bar is shown.
        from rich.console import Console  # noqa: PLC0415
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        console = Console(stderr=True)
        super().__init__(sys.stderr)
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._bar.start()
        self.stream = console.file

    def event(self, kind: str, **fields: Any) -> None:
        if kind == "file_started":
            description = f"{fields['file']} (attempt {fields['attempt']})"
            self._task = self._bar.add_task(description, total=fields["content_size"])
            return
        template = self._FORMATS.get(kind)
        if template:
            self._bar.console.print(template.format(**fields) + _overall(fields))

    def progress(self, sent: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=sent)

    def close(self) -> None:
        self._bar.stop()
