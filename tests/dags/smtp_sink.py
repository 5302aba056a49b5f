"""An SMTP server on 127.0.0.1 that keeps what it is sent, for the alert tests: the plain
protocol (EHLO or HELO, MAIL, RCPT, DATA, QUIT; no TLS, no authentication), one thread per
connection, stopped by the fixture that started it."""

from __future__ import annotations

import email
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message


@dataclass
class Sink:
    port: int
    messages: list[tuple[list[str], Message]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait(self, count: int, timeout: float = 30.0) -> list[tuple[list[str], Message]]:
        """The messages once at least `count` arrived (or all there are after `timeout`)."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)


def text(message: Message) -> str:
    """A message's decoded body (its parts joined)."""
    parts = message.walk() if message.is_multipart() else [message]
    return "".join(p.get_payload(decode=True).decode() for p in parts
                   if not p.is_multipart() and p.get_payload(decode=True))


class _Session(socketserver.StreamRequestHandler):
    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        sink: Sink = self.server.sink  # type: ignore[attr-defined]
        self.reply("220 clickscore test sink")
        recipients: list[str] = []
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.reply("250 sink")
            elif verb == b"MAIL":
                recipients = []
                self.reply("250 OK")
            elif verb == b"RCPT":
                recipients.append(line.decode().split(":", 1)[1].strip().strip("<>"))
                self.reply("250 OK")
            elif verb == b"DATA":
                self.reply("354 end with .")
                body = []
                while (data := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                    body.append(data[1:] if data.startswith(b"..") else data)
                with sink.arrived:
                    sink.messages.append((recipients, email.message_from_bytes(b"".join(body))))
                    sink.arrived.notify_all()
                self.reply("250 queued")
            elif verb == b"QUIT":
                self.reply("221 bye")
                return
            else:  # RSET, NOOP, ...
                self.reply("250 OK")


@contextmanager
def smtp_sink() -> Iterator[Sink]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Session)
    server.daemon_threads = True
    server.sink = Sink(server.server_address[1])  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.sink  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
