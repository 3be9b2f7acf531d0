"""Raw-socket HTTP for tests of framing, timeouts and connection limits: the
bytes go out exactly as written (requests would fix up headers), and what
comes back is split into responses by hand."""
import re
import socket
import time

STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) ", re.M)


def exchange(port, data, timeout=3.0, source="127.0.0.1", strict=False):
    """Send data on a fresh connection; everything received until the server
    closes it or `timeout` seconds pass without a byte (strict: that raises
    socket.timeout instead - a server that never finishes answering)."""
    with socket.socket() as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        sock.sendall(data)
        received = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except socket.timeout:
            if strict:
                raise
        return received


def statuses(received):
    """The status codes of every response in `received`, in order (a status
    line is looked for only at the start of a response, never in a body)."""
    codes, rest = [], received
    while rest:
        match = STATUS_LINE.match(rest)
        if match is None:
            break
        codes.append(int(match.group(1)))
        head, _, rest = rest.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        body_length = int(length.group(1)) if length else len(rest)
        rest = rest[body_length:]
    return codes


def wait_closed(sock, timeout):
    """Seconds until the server closed sock (EOF or reset), or None."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < timeout:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - started
    return None
