#!/usr/bin/env python3
"""Soak test: the release gateway in front of a misbehaving mock OpenRouter, under mixed load.

    python3 tests/soak/soak.py --duration 60          # CI
    python3 tests/soak/soak.py --duration 600         # ten minutes

Builds `orgate` (cargo build --release --bin orgate; CARGO_TARGET_DIR is honoured), starts its
own mock upstream on 127.0.0.1 and the gateway on 127.0.0.1 with a short `upstream.idle_timeout`,
then runs mixed load for --duration seconds: JSON completions, SSE streams in OpenRouter's
shape, clients that hang up mid-stream, and requests that hit injected faults (resets
mid-stream, stalls past the idle timeout, 503s, headers that never come, garbage SSE, streams
without [DONE], in-band errors, cut JSON bodies), plus policy refusals, 401s, 400s and 429s.

At the end it checks, and exits 1 if any check fails:
- every stream read to its end ended with `data: [DONE]` or a final error event
  (`"finish_reason":"error"`), and each kind of request got the answer its fault calls for;
- no request hung (client-side timeouts);
- `orgate_inflight_requests` and `orgate_inflight_streams` are back to 0 for every key;
- RSS and open fds are back near their level after warm-up (both are printed);
- a client that hung up had its upstream request cancelled;
- the gateway's log has no `panic`, and SIGTERM stops it with exit status 0.

Python 3.8+ standard library only. Only 127.0.0.1 is ever contacted.
"""

import argparse
import asyncio
import collections
import hashlib
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UPSTREAM_KEY = "sk-or-v1-soak-test-not-a-real-key"
CLIENT_KEYS = {
    "soak-a": "sk-orgate-soak-a-0123456789abcdef",
    "soak-b": "sk-orgate-soak-b-0123456789abcdef",
    "soak-limited": "sk-orgate-soak-limited-0123456789",
}
IDLE_TIMEOUT_S = 1.0
FIRST_BYTE_TIMEOUT_S = 2.0
# Mock keep-alive connections idle this long are closed, so the gateway's pool drains.
MOCK_KEEPALIVE_S = 2.0
REQUEST_TIMEOUT_S = 20.0


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# SSE: a reader by the WHATWG rules (CR, LF and CRLF line endings; data lines joined by LF).


def sse_events(body):
    """The data of each complete event in `body`, and whether `body` ended between events."""
    events, data, has_data, in_event = [], [], False, False
    for line, ended in _lines(body):
        if not ended:
            return events, False
        if not line:
            if has_data:
                events.append(b"\n".join(data))
            data, has_data, in_event = [], False, False
            continue
        in_event = True
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
            has_data = True
    return events, not in_event


def _lines(body):
    start, i, n = 0, 0, len(body)
    while i < n:
        c = body[i]
        if c == 0x0A or c == 0x0D:
            yield body[start:i], True
            i += 2 if (c == 0x0D and i + 1 < n and body[i + 1] == 0x0A) else 1
            start = i
        else:
            i += 1
    if start < n:
        yield body[start:], False


def is_error_event(data):
    try:
        chunk = json.loads(data)
    except ValueError:
        return False
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    return bool(
        isinstance(chunk, dict)
        and chunk.get("error")
        and choices
        and isinstance(choices[0], dict)
        and choices[0].get("finish_reason") == "error"
    )


# ---------------------------------------------------------------------------------------------
# The mock OpenRouter.


def chunk_json(gen, delta, finish=None, **extra):
    chunk = {
        "id": gen,
        "provider": "OpenAI",
        "model": "openai/gpt-4o",
        "object": "chat.completion.chunk",
        "created": 1738000000,
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "finish_reason": finish,
                "native_finish_reason": finish,
                "logprobs": None,
            }
        ],
    }
    chunk.update(extra)
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 30,
    "total_tokens": 42,
    "cost": 0.00021,
    "is_byok": False,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}


def words(n):
    return [f"w{i} " for i in range(n)]


def garbage(rng):
    """Bytes a broken upstream might send; always ends at an event boundary."""
    pieces = [
        b"data: {not json\n\n",
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))).replace(b"\n", b"").replace(b"\r", b"") + b"\n\n",
        b"\r\r",
        b"data: lone CR line\r\r",
        b"event: weird\nid: 7\nretry: 10\n\n",
        b": comment without a blank line\n",
        b"data: \x00\x01\x02 nul bytes\n\n",
        b"data: " + b"x" * rng.randrange(1000, 200_000) + b"\n\n",
        b"field-without-colon\n\n",
        b"data: [DONE] but not alone\ndata: second line\n\n",
        b"data: {\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}\r\n\r\n",
    ]
    out = [rng.choice(pieces) for _ in range(rng.randrange(3, 10))]
    return b"".join(out) + b"\n\n"


class Mock:
    """A keep-alive HTTP/1.1 server. `x-mock` picks the behaviour; `x-soak-kind` is counted."""

    def __init__(self):
        self.stats = collections.Counter()
        self.cancelled_by_kind = collections.Counter()
        self.server = None
        self.port = None
        self.active = 0  # responses being written
        self.rng = random.Random(7)

    async def start(self):
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0, limit=1 << 20)
        self.port = self.server.sockets[0].getsockname()[1]

    async def serve(self, reader, writer):
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), MOCK_KEEPALIVE_S)
                except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                elif "chunked" in headers.get("transfer-encoding", ""):
                    body = await read_chunked(reader)
                self.stats["requests"] += 1
                self.active += 1
                try:
                    keep = await self.respond(method, target, headers, body, writer)
                finally:
                    self.active -= 1
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    async def send(self, writer, data):
        writer.write(data)
        await writer.drain()

    async def respond(self, method, target, headers, body, writer):
        path = target.split("?", 1)[0]
        kind = headers.get("x-soak-kind", "-")
        if path.endswith("/models"):
            await self.json(writer, 200, {"data": [{"id": "openai/gpt-4o"}, {"id": "openai/gpt-4o-mini"}, {"id": "anthropic/claude-sonnet-4"}]})
            return True
        if path.endswith("/generation"):
            await self.json(writer, 200, {"data": {"id": "gen-x", "tokens_prompt": 10, "tokens_completion": 5, "native_tokens_prompt": 11, "native_tokens_completion": 6, "total_cost": 0.0001}})
            return True
        if not path.endswith("/chat/completions"):
            await self.json(writer, 404, {"error": {"code": 404, "message": "not found"}})
            return True
        try:
            request = json.loads(body)
        except ValueError:
            await self.json(writer, 400, {"error": {"code": 400, "message": "bad json reached the mock"}})
            return True
        mode = headers.get("x-mock") or ("stream" if request.get("stream") is True else "json")
        self.stats["chat:" + mode] += 1
        chunks = int(headers.get("x-mock-chunks", "8"))
        delay = int(headers.get("x-mock-delay-ms", "5")) / 1000
        gen = "gen-" + hashlib.sha1(os.urandom(8)).hexdigest()[:16]

        if mode == "json":
            await self.json(writer, 200, {
                "id": gen, "provider": "OpenAI", "model": "openai/gpt-4o", "object": "chat.completion",
                "created": 1738000000,
                "choices": [{"index": 0, "finish_reason": "stop", "native_finish_reason": "stop",
                             "message": {"role": "assistant", "content": "".join(words(chunks)), "refusal": None}}],
                "usage": USAGE,
            }, extra_headers=f"x-generation-id: {gen}\r\n")
            return True
        if mode == "status-503":
            await self.json(writer, 503, {"error": {"code": 503, "message": "No instances available", "metadata": {"error_type": "provider_overloaded"}}},
                            extra_headers="retry-after: 0\r\n")
            return True
        if mode == "hang":
            await asyncio.sleep(FIRST_BYTE_TIMEOUT_S * 2)
            return False
        if mode == "json-cut":
            payload = json.dumps({"id": gen, "choices": [{"message": {"content": "x" * 400}}]}).encode()
            await self.send(writer, b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload[: len(payload) // 2])
            await asyncio.sleep(0.05)
            return False

        # Streams.
        await self.send(writer, (
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            f"x-generation-id: {gen}\r\ntransfer-encoding: chunked\r\n\r\n").encode())

        async def event(data):
            await self.send(writer, b"%x\r\n%s\r\n" % (len(data), data))

        async def finish():
            await self.send(writer, b"0\r\n\r\n")

        try:
            await event(b": OPENROUTER PROCESSING\n\n")
            await event(chunk_json(gen, {"role": "assistant", "content": ""}))
            if mode in ("stream-garbage-done", "stream-garbage-cut"):
                await event(garbage(self.rng))
                if mode == "stream-garbage-done":
                    await event(b"data: [DONE]\n\n")
                else:
                    # Stop mid-line, mid-event or right after a bare CR, then end cleanly.
                    await event(self.rng.choice([b"data: {\"partial", b"data: x\r", b"data: x\n", b": c\r", b"data: y\r\n"]))
                await finish()
                return True
            for i, word in enumerate(words(chunks)):
                if mode == "stream-reset" and i == 2:
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return False
                if mode == "stream-stall" and i == 1:
                    # Silent past the gateway's idle timeout; it should give up and hang up.
                    await asyncio.sleep(IDLE_TIMEOUT_S * 3)
                    await event(b": still here?\n\n")
                    await asyncio.sleep(0.2)
                    await event(b": still here?\n\n")
                    self.stats["stall:not_dropped"] += 1
                    return False
                if i % 4 == 3:
                    await event(b": OPENROUTER PROCESSING\n\n")
                await event(chunk_json(gen, {"role": "assistant", "content": word}))
                if delay:
                    await asyncio.sleep(delay)
            if mode == "stream-error":
                await event(chunk_json(gen, {"content": ""}, "error", error={
                    "code": 429, "message": "Rate limit exceeded",
                    "metadata": {"error_type": "rate_limit_exceeded", "provider_code": "rate_limited"}}))
                await finish()
                return True
            await event(chunk_json(gen, {"role": "assistant", "content": ""}, "stop"))
            usage = json.loads(chunk_json(gen, {})[6:])
            usage["choices"] = []
            usage["usage"] = USAGE
            await event(b"data: " + json.dumps(usage, separators=(",", ":")).encode() + b"\n\n")
            if mode != "stream-no-done":
                await event(b"data: [DONE]\n\n")
            await finish()
            self.stats["stream:completed"] += 1
            return True
        except (ConnectionError, OSError):
            # The gateway hung up on us mid-stream: the client went away, or it gave up.
            self.cancelled_by_kind[kind] += 1
            self.stats["stream:cancelled"] += 1
            return False

    async def json(self, writer, status, value, extra_headers=""):
        payload = json.dumps(value).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}.get(status, "X")
        await self.send(writer, (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\n{extra_headers}\r\n").encode() + payload)


async def read_chunked(reader):
    out = b""
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return out
        out += await reader.readexactly(size)
        await reader.readexactly(2)


# ---------------------------------------------------------------------------------------------
# The load: workers with keep-alive connections to the gateway.


class Conn:
    def __init__(self, port):
        self.port = port
        self.reader = self.writer = None

    async def ensure(self):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)
            return True
        return False

    def drop(self, rst=False):
        if self.writer is not None:
            if rst:
                try:
                    sock = self.writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
                self.writer.transport.abort()
            else:
                self.writer.close()
        self.reader = self.writer = None


class Response:
    def __init__(self):
        self.status = None
        self.headers = {}
        self.body = b""
        self.complete = False  # the body was read to its announced end
        self.closed = False  # the server will close the connection


async def request(conn, method, path, headers, body=b"", stop_after_events=None):
    """One request; with `stop_after_events`, hangs up once that many events have arrived."""
    for attempt in (0, 1):
        fresh = await conn.ensure()
        head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{conn.port}\r\n"
        for k, v in headers.items():
            head += f"{k}: {v}\r\n"
        if body or method == "POST":
            head += f"content-length: {len(body)}\r\n"
        conn.writer.write(head.encode() + b"\r\n" + body)
        try:
            await conn.writer.drain()
            status_line = await conn.reader.readline()
        except (ConnectionError, OSError):
            status_line = b""
        if status_line:
            break
        conn.drop()
        if fresh or attempt:
            raise ConnectionError("the gateway closed the connection before answering")
    resp = Response()
    resp.status = int(status_line.split()[1])
    while True:
        line = await conn.reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        resp.headers[k.strip().lower()] = v.strip()
    resp.closed = resp.headers.get("connection", "").lower() == "close"
    chunks = []
    seen = 0
    if stop_after_events == 0:
        return resp
    try:
        async for data in body_chunks(conn.reader, resp.headers):
            chunks.append(data)
            if stop_after_events is not None:
                seen += data.count(b"\n\n")
                if seen >= stop_after_events:
                    resp.body = b"".join(chunks)
                    return resp
        resp.complete = True
    except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError):
        resp.closed = True
    resp.body = b"".join(chunks)
    return resp


async def body_chunks(reader, headers):
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            line = await reader.readline()
            if not line:
                raise asyncio.IncompleteReadError(b"", None)
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            yield data
    elif "content-length" in headers:
        n = int(headers["content-length"])
        if n:
            yield await reader.readexactly(n)
    else:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            yield data


def chat_body(stream, model="openai/gpt-4o", **extra):
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Count for me, please. h\u00e9 \U0001F600"},
        ],
        "stream": stream,
    }
    body.update(extra)
    return json.dumps(body).encode()


def auth(key="soak-a", **more):
    h = {"authorization": f"Bearer {CLIENT_KEYS[key]}", "content-type": "application/json"}
    h.update(more)
    return h


# Each kind: weight, and what it does and expects. A check returns None when the answer is right,
# else why it is wrong.
KINDS = {
    "json": 18,
    "stream": 26,
    "disconnect": 10,
    "disconnect-stall": 2,
    "stream-reset": 5,
    "stream-stall": 4,
    "stream-no-done": 3,
    "stream-error": 3,
    "stream-garbage-done": 3,
    "stream-garbage-cut": 4,
    "status-503": 4,
    "hang": 1,
    "json-cut": 2,
    "models": 3,
    "policy": 4,
    "limited": 4,
    "bad-request": 2,
    "unauthorised": 2,
}


def check_stream_end(resp, want):
    """`want`: "done", "error" or "either"."""
    if resp.status != 200:
        return f"status {resp.status}"
    if not resp.complete:
        return "body cut short"
    events, clean = sse_events(resp.body)
    if not events:
        return "no events"
    if not clean:
        return "ended inside an event"
    last = events[-1]
    if last == b"[DONE]":
        got = "done"
    elif is_error_event(last):
        got = "error"
    else:
        return f"ended with neither [DONE] nor an error event: {last[:120]!r}"
    if want != "either" and got != want:
        return f"ended with {got}, expected {want}"
    return None


async def run_one(kind, conn, rng, result):
    """Runs one request of `kind` on `conn`; fills `result` (a dict)."""
    h = {"x-soak-kind": kind}
    if kind == "json":
        n = rng.randrange(1, 30)
        resp = await request(conn, "POST", "/v1/chat/completions", auth(**h, **{"x-mock": "json", "x-mock-chunks": str(n)}), chat_body(False))
        try:
            value = json.loads(resp.body)
            ok = value["choices"][0]["message"]["content"] == "".join(words(n)) and value["usage"]["total_tokens"] == 42
        except (ValueError, KeyError, IndexError, TypeError):
            ok = False
        result["bad"] = None if resp.status == 200 and ok else f"status {resp.status}, body {resp.body[:120]!r}"
    elif kind == "stream":
        n = rng.randrange(1, 40)
        resp = await request(conn, "POST", "/api/v1/chat/completions", auth(**h, **{"x-mock-chunks": str(n), "x-mock-delay-ms": str(rng.randrange(0, 20))}), chat_body(True))
        result["bad"] = check_stream_end(resp, "done")
        if result["bad"] is None:
            events, _ = sse_events(resp.body)
            text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1] if json.loads(e).get("choices"))
            if text != "".join(words(n)):
                result["bad"] = f"content differs: {text[:80]!r}"
    elif kind in ("disconnect", "disconnect-stall"):
        mode = "stream" if kind == "disconnect" else "stream-stall"
        after = rng.randrange(0, 6) if kind == "disconnect" else 2
        resp = await request(conn, "POST", "/v1/chat/completions", auth(**h, **{"x-mock": mode, "x-mock-chunks": "60", "x-mock-delay-ms": "25"}), chat_body(True), stop_after_events=after)
        conn.drop(rst=rng.random() < 0.5)
        result["bad"] = None if resp.status == 200 else f"status {resp.status}"
        result["disconnected"] = not resp.complete
    elif kind in ("stream-reset", "stream-stall", "stream-no-done", "stream-garbage-cut"):
        started = time.monotonic()
        resp = await request(conn, "POST", "/v1/chat/completions", auth(**h, **{"x-mock": kind}), chat_body(True))
        result["bad"] = check_stream_end(resp, "error")
        if kind == "stream-stall" and time.monotonic() - started > IDLE_TIMEOUT_S + 2.5:
            result["bad"] = result["bad"] or f"the stall took {time.monotonic() - started:.1f}s to end"
    elif kind == "stream-error":
        resp = await request(conn, "POST", "/v1/chat/completions", auth(**h, **{"x-mock": kind}), chat_body(True))
        result["bad"] = check_stream_end(resp, "error")
        if result["bad"] is None and b"rate_limit_exceeded" not in sse_events(resp.body)[0][-1]:
            result["bad"] = "the upstream's own error event was not the last"
    elif kind == "stream-garbage-done":
        resp = await request(conn, "POST", "/v1/chat/completions", auth(**h, **{"x-mock": kind}), chat_body(True))
        result["bad"] = check_stream_end(resp, "done")
    elif kind == "status-503":
        stream = rng.random() < 0.5
        resp = await request(conn, "POST", "/v1/chat/completions", auth(**h, **{"x-mock": kind}), chat_body(stream))
        result["bad"] = None if resp.status == 503 and b"provider_overloaded" in resp.body else f"status {resp.status}"
    elif kind == "hang":
        resp = await request(conn, "POST", "/v1/chat/completions", auth(**h, **{"x-mock": kind}), chat_body(rng.random() < 0.5))
        result["bad"] = None if resp.status == 504 else f"status {resp.status}"
    elif kind == "json-cut":
        resp = await request(conn, "POST", "/v1/chat/completions", auth(**h, **{"x-mock": kind}), chat_body(False))
        # Headers went out before the body broke: the client sees a cut body, never a hang.
        result["bad"] = None if resp.status in (200, 502) and not (resp.status == 200 and resp.complete) else f"status {resp.status}, complete {resp.complete}"
        conn.drop()
    elif kind == "models":
        resp = await request(conn, "GET", "/v1/models", auth(**h))
        result["bad"] = None if resp.status == 200 and b"openai/gpt-4o" in resp.body else f"status {resp.status}"
    elif kind == "policy":
        allowed = rng.random() < 0.6
        model = rng.choice(["anthropic/claude-sonnet-4", "openai/gpt-4o"]) if allowed else "google/gemini-2.5-pro"
        resp = await request(conn, "POST", "/v1/chat/completions", auth("soak-b", **h), chat_body(rng.random() < 0.5, model=model, max_tokens=4000, provider={"only": ["OpenAI", "Azure"], "sort": "price"}))
        if allowed:
            ct = resp.headers.get("content-type", "")
            result["bad"] = (check_stream_end(resp, "done") if ct.startswith("text/event-stream") else (None if resp.status == 200 else f"status {resp.status}"))
        else:
            result["bad"] = None if resp.status == 403 else f"status {resp.status}, expected 403"
    elif kind == "limited":
        resp = await request(conn, "POST", "/v1/chat/completions", auth("soak-limited", **h, **{"x-mock-chunks": "20", "x-mock-delay-ms": "20"}), chat_body(True))
        result["bad"] = None if resp.status == 429 else check_stream_end(resp, "done")
    elif kind == "bad-request":
        body = rng.choice([b"{\"messages\": [", b"[1,2]", b"{\"model\":\"x\"}", b"{\"messages\":[],\"messages\":[]}"])
        resp = await request(conn, "POST", "/v1/chat/completions", auth(**h), body)
        result["bad"] = None if resp.status == 400 else f"status {resp.status}"
    elif kind == "unauthorised":
        resp = await request(conn, "POST", "/v1/chat/completions", {"authorization": "Bearer sk-orgate-wrong", "content-type": "application/json", **h}, chat_body(False))
        result["bad"] = None if resp.status == 401 else f"status {resp.status}"
    else:
        raise ValueError(kind)
    result["status"] = resp.status
    if resp.closed or not (resp.complete or result.get("disconnected")):
        conn.drop()


class Load:
    def __init__(self, port, seed):
        self.port = port
        self.rng = random.Random(seed)
        self.results = collections.Counter()  # (kind, outcome) -> n
        self.statuses = collections.Counter()  # (kind, status) -> n
        self.failures = []
        self.hung = []
        self.disconnects = 0
        self.errors = collections.Counter()

    async def worker(self, stop_at):
        conn = Conn(self.port)
        kinds, weights = zip(*KINDS.items())
        while time.monotonic() < stop_at:
            kind = self.rng.choices(kinds, weights)[0]
            result = {}
            started = time.monotonic()
            try:
                await asyncio.wait_for(run_one(kind, conn, self.rng, result), REQUEST_TIMEOUT_S)
            except asyncio.TimeoutError:
                self.hung.append(f"{kind}: no end after {REQUEST_TIMEOUT_S:.0f}s")
                self.results[(kind, "hung")] += 1
                conn.drop()
                continue
            except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
                self.errors[f"{kind}: {type(e).__name__}: {e}"] += 1
                self.results[(kind, "client-error")] += 1
                conn.drop()
                continue
            self.statuses[(kind, result.get("status"))] += 1
            if result.get("disconnected"):
                self.disconnects += 1
            if result.get("bad"):
                self.results[(kind, "WRONG")] += 1
                if len(self.failures) < 50:
                    self.failures.append(f"{kind}: {result['bad']} ({time.monotonic() - started:.2f}s)")
            else:
                self.results[(kind, "ok")] += 1
        conn.drop()


# ---------------------------------------------------------------------------------------------
# The gateway process.


def build(args):
    if args.binary:
        return args.binary
    started = time.monotonic()
    log("cargo build --release --bin orgate")
    subprocess.run(["cargo", "build", "--release", "--bin", "orgate"], cwd=REPO, check=True)
    log(f"built in {time.monotonic() - started:.0f}s")
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1"], cwd=REPO, check=True,
        capture_output=True).stdout)
    return os.path.join(meta["target_directory"], "release", "orgate")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path, mock_port):
    def h(key):
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    text = f"""
[server]
max_body = "1MiB"
shutdown_grace = "5s"

[upstream]
base_url = "http://127.0.0.1:{mock_port}/api/v1"
connect_timeout = "1s"
first_byte_timeout = "{FIRST_BYTE_TIMEOUT_S:g}s"
idle_timeout = "{IDLE_TIMEOUT_S:g}s"
retries = 1

[[auth.keys]]
id = "soak-a"
hash = "{h(CLIENT_KEYS['soak-a'])}"

[[auth.keys]]
id = "soak-b"
hash = "{h(CLIENT_KEYS['soak-b'])}"
policy = "team"

[[auth.keys]]
id = "soak-limited"
hash = "{h(CLIENT_KEYS['soak-limited'])}"
max_concurrent = 2
requests_per_minute = 120
burst = 4

[limits]
requests_per_minute = 0
max_concurrent = 0

[policy]
aliases = {{ fast = "openai/gpt-4o-mini" }}

[policies.team]
models.allow = ["openai/*", "anthropic/*"]
max_tokens = 512

[policies.team.provider]
zdr = true
ignore = ["DeepInfra"]
"""
    with open(path, "w") as f:
        f.write(text)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


async def get(port, path):
    conn = Conn(port)
    try:
        return await asyncio.wait_for(request(conn, "GET", path, {}), 5)
    finally:
        conn.drop()


def gauges(metrics_text):
    out = {}
    for line in metrics_text.splitlines():
        m = re.match(r'^(orgate_inflight_(?:requests|streams))\{([^}]*)\} (\S+)$', line)
        if m:
            out[f"{m.group(1)}{{{m.group(2)}}}"] = float(m.group(3))
    return out


async def main(args):
    binary = build(args)
    workdir = tempfile.mkdtemp(prefix="orgate-soak-")
    mock = Mock()
    await mock.start()
    port = free_port()
    config = os.path.join(workdir, "orgate.toml")
    write_config(config, mock.port)
    log_path = args.log or os.path.join(workdir, "gateway.log")
    env = dict(os.environ, OPENROUTER_API_KEY=UPSTREAM_KEY, ORGATE_LOG_FORMAT="json", ORGATE_LOG="info")
    for var in ("ORGATE_CONFIG", "ORGATE_LISTEN", "ORGATE_UPSTREAM_URL"):
        env.pop(var, None)
    log_file = open(log_path, "wb")
    gateway = subprocess.Popen([binary, "serve", "--config", config, "--listen", f"127.0.0.1:{port}"],
                               env=env, stdout=log_file, stderr=subprocess.STDOUT)
    log(f"gateway pid {gateway.pid} on 127.0.0.1:{port}, mock on 127.0.0.1:{mock.port}, log {log_path}")
    checks = []

    def check(name, ok, detail):
        checks.append((name, ok, detail))

    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if (await get(port, "/healthz")).status == 200:
                    break
            except (OSError, asyncio.TimeoutError, ValueError, IndexError):
                pass
            if gateway.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the gateway did not come up (exit {gateway.poll()}); see {log_path}")
            await asyncio.sleep(0.1)
        rss_start, fds_start = rss_kib(gateway.pid), fd_count(gateway.pid)

        # Warm-up: the same load for a few seconds, then idle, so the baseline has its pools,
        # its threads and its allocator arenas.
        warm = Load(port, args.seed + 1)
        stop = time.monotonic() + args.warmup
        await asyncio.gather(*(warm.worker(stop) for _ in range(args.concurrency)))
        await asyncio.sleep(MOCK_KEEPALIVE_S + 1.5)
        rss_warm, fds_warm = rss_kib(gateway.pid), fd_count(gateway.pid)
        mock.stats.clear()
        mock.cancelled_by_kind.clear()
        log(f"after start: RSS {rss_start} KiB, {fds_start} fds; after warm-up: RSS {rss_warm} KiB, {fds_warm} fds")

        load = Load(port, args.seed)
        stop = time.monotonic() + args.duration
        samples = []

        async def sampler():
            every = min(10, max(1, args.duration / 10))
            while time.monotonic() + every < stop:
                await asyncio.sleep(every)
                samples.append((rss_kib(gateway.pid), fd_count(gateway.pid)))
                done = sum(load.results.values())
                log(f"{done} requests, RSS {samples[-1][0]} KiB, {samples[-1][1]} fds")

        log(f"load: {args.concurrency} clients for {args.duration}s")
        load_started = time.monotonic()
        await asyncio.gather(sampler(), *(load.worker(stop) for _ in range(args.concurrency)))
        elapsed = time.monotonic() - load_started

        # Settle: gauges to zero, upstream pool drained, background settlements done.
        settle_deadline = time.monotonic() + 25
        last_gauges = {}
        while time.monotonic() < settle_deadline:
            last_gauges = gauges((await get(port, "/metrics")).body.decode())
            if last_gauges and all(v == 0 for v in last_gauges.values()):
                break
            await asyncio.sleep(0.5)
        # The mock's stalled and hanging answers finish (they count cancellations), and its
        # idle keep-alive connections close, so the gateway's upstream pool drains.
        while time.monotonic() < settle_deadline and mock.active:
            await asyncio.sleep(0.2)
        fd_slack = 8
        while time.monotonic() < settle_deadline and fd_count(gateway.pid) > fds_warm + 2:
            await asyncio.sleep(0.5)
        rss_end, fds_end = rss_kib(gateway.pid), fd_count(gateway.pid)
        metrics_text = (await get(port, "/metrics")).body.decode()
        last_gauges = gauges(metrics_text)
    finally:
        if gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
        try:
            exit_code = gateway.wait(timeout=15)
        except subprocess.TimeoutExpired:
            gateway.kill()
            exit_code = "killed after 15s"
        log_file.close()
        mock.server.close()

    # ---- report
    total = sum(load.results.values())
    print()
    print(f"== load: {total} requests in {elapsed:.0f}s ({total / elapsed:.1f}/s), {args.concurrency} clients")
    print(f"{'kind':22} {'ok':>7} {'wrong':>6} {'hung':>5} {'c-err':>6}  statuses")
    for kind in KINDS:
        row = {o: load.results[(kind, o)] for o in ("ok", "WRONG", "hung", "client-error")}
        st = ", ".join(f"{s}: {n}" for (k, s), n in sorted(load.statuses.items(), key=lambda x: str(x[0][1])) if k == kind)
        print(f"{kind:22} {row['ok']:7} {row['WRONG']:6} {row['hung']:5} {row['client-error']:6}  {st}")
    print(f"client hang-ups mid-stream: {load.disconnects}; upstream streams the gateway cancelled: "
          f"{sum(mock.cancelled_by_kind.values())} ({dict(mock.cancelled_by_kind)})")
    print(f"mock: {dict(sorted(mock.stats.items()))}")
    for failure in load.failures[:20]:
        print("  WRONG", failure)
    for e, n in load.errors.most_common(10):
        print(f"  client error x{n}: {e}")

    with open(log_path, "rb") as f:
        log_bytes = f.read()
    log_lines = log_bytes.decode("utf-8", "replace").splitlines()
    panics = [line for line in log_lines if "panic" in line.lower()]
    outcomes = collections.Counter()
    levels = collections.Counter()
    not_json = 0
    for line in log_lines:
        try:
            entry = json.loads(line)
        except ValueError:
            not_json += 1
            continue
        fields = entry.get("fields", entry)
        levels[entry.get("level")] += 1
        if fields.get("message") == "request" and entry.get("target") == "orgate::access":
            outcomes[(fields.get("outcome"), fields.get("error", "-"))] += 1
    print(f"gateway access log: {sum(outcomes.values())} requests; by (outcome, error): "
          + ", ".join(f"{o}/{e}: {n}" for (o, e), n in outcomes.most_common()))
    print(f"gateway log: {len(log_lines)} lines ({dict(levels)}), {not_json} not JSON, {len(panics)} mentioning panic")
    rss_peak = max([s[0] for s in samples] + [rss_end])
    fds_peak = max([s[1] for s in samples] + [fds_end])
    print(f"RSS KiB: start {rss_start}, after warm-up {rss_warm}, peak {rss_peak}, end {rss_end}")
    print(f"open fds: start {fds_start}, after warm-up {fds_warm}, peak {fds_peak}, end {fds_end}")
    print("gauges at the end: " + ", ".join(f"{k} {v:g}" for k, v in sorted(last_gauges.items())))

    wrong = sum(n for (k, o), n in load.results.items() if o == "WRONG")
    client_errors = sum(n for (k, o), n in load.results.items() if o == "client-error")
    check("load ran", total > 0, f"{total} requests")
    check("every request got the answer its kind calls for (streams end with [DONE] or an error event)",
          wrong == 0, f"{wrong} wrong")
    check("no client-side connection errors", client_errors == 0, f"{client_errors}")
    check("nothing hung", not load.hung and not warm.hung, f"{len(load.hung) + len(warm.hung)} hung")
    check("inflight gauges back to 0 for every key",
          bool(last_gauges) and all(v == 0 for v in last_gauges.values()),
          ", ".join(f"{k}={v:g}" for k, v in last_gauges.items() if v) or "all 0")
    rss_limit = rss_warm + max(16 * 1024, rss_warm // 2)
    check("RSS back near its level after warm-up", rss_end <= rss_limit,
          f"{rss_end} KiB (warm-up {rss_warm}, limit {rss_limit})")
    check("open fds back near their level after warm-up", fds_end <= fds_warm + fd_slack,
          f"{fds_end} (warm-up {fds_warm}, slack {fd_slack})")
    cancelled = mock.cancelled_by_kind["disconnect"] + mock.cancelled_by_kind["disconnect-stall"]
    check("clients that hung up had their upstream request cancelled",
          cancelled >= 0.9 * load.disconnects, f"{cancelled} of {load.disconnects}")
    check("stalled upstreams were dropped after the idle timeout", mock.stats["stall:not_dropped"] == 0,
          f"{mock.stats['stall:not_dropped']} still connected after {IDLE_TIMEOUT_S * 3:g}s")
    check("no panic in the gateway log", not panics, panics[0][:200] if panics else "none")
    check("SIGTERM: the gateway exits 0", exit_code == 0, f"exit {exit_code}")
    print()
    failed = 0
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
        failed += not ok
    print(f"log: {log_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of load (default 60)")
    parser.add_argument("--concurrency", type=int, default=12, help="concurrent clients (default 12)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up load before the baseline")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--binary", help="use this orgate binary instead of building one")
    parser.add_argument("--log", help="where to write the gateway's log (default: a temp dir)")
    sys.exit(asyncio.run(main(parser.parse_args())))
