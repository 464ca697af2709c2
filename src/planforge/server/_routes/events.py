"""Routes: `GET /ws/events`, the authenticated user's run events, live.

The bus calls subscribers on whichever thread publishes; events cross to the event loop
through `call_soon_threadsafe` into a bounded queue. A client that falls more than the
queue's bound behind is closed (code 1013) rather than buffered without end; it reconnects
with `?since=<last user_sequence>` and gets what it missed from the bus's per-user buffer.
A `since` ahead of the user's stream (a client that saw another incarnation of it) replays
nothing: the first message is then a `stream_position` notice with the current
`user_sequence`, and live events follow.

Authentication: the `Authorization: Bearer` header, or (for browsers, which cannot set
headers on a WebSocket) the subprotocols `planforge.v1` and `planforge.token.<token>`; the
handshake is accepted with `planforge.v1` only, never echoing the token. `?token=` still works
but is discouraged: query strings end up in access logs. A stream whose token is revoked or
rotated away is closed with 4401 within a second: one watcher per process (`server.streams`)
re-checks the open streams' tokens only when this process's token cache was dropped, so an
open stream adds no timer and no query of its own.

Close codes: 4401 missing or wrong token, 4400 malformed `since`, 1008 a user the runtime
cannot serve (permanent: do not retry), 1013 too slow or too many connections for the user
(try again later).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from planforge.errors import PlannerError
from planforge.logs import get_logger
from planforge.runtime import RuntimeEvent
from planforge.runtime.errors import EventBusError
from planforge.server._auth import websocket_subprotocol, websocket_token
from planforge.server._state import ServiceState

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_POLICY",
    "CLOSE_TOO_SLOW",
    "CLOSE_UNAUTHORIZED",
    "STREAM_POSITION",
    "router",
]

router = APIRouter(tags=["events"])
_log = get_logger("server.events")

CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_REQUEST = 4400
CLOSE_TOO_SLOW = 1013  # "try again later"
CLOSE_POLICY = 1008  # "policy violation": a refusal that retrying cannot change
#: The notice sent first when `since` is ahead of the user's stream.
STREAM_POSITION = "stream_position"
#: Events a connection may hold unsent beyond the bus's replay buffer; `extra["ws_max_pending"]`
#: on the service state overrides the whole bound.
EXTRA_PENDING = 1024
_OVERFLOW = object()
# a close reason has at most 123 bytes
_UNAUTHORIZED_REASON = (
    "missing or invalid API token: send Authorization: Bearer <token> or subprotocols "
    "planforge.v1, planforge.token.<token>"
)


def _max_pending(state: ServiceState) -> int:
    configured = state.extra.get("ws_max_pending")
    if isinstance(configured, int) and not isinstance(configured, bool) and configured > 0:
        return configured
    # a full replay must fit, or reconnecting after a burst could never succeed
    return int(getattr(state.bus, "buffer_size", 1000)) + EXTRA_PENDING


def _parse_since(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ValueError(raw)
    return int(raw)


@router.websocket("/ws/events")
async def stream_events(websocket: WebSocket) -> None:
    """Stream the caller's events as JSON objects (`RuntimeEvent.to_dict()`), oldest first.

    Authenticate with `Authorization: Bearer <token>`, or offer the subprotocols
    `planforge.v1` and `planforge.token.<token>` (`?token=<token>` works but is discouraged);
    add `?since=<user_sequence>` to receive the buffered events after that one first.
    """
    state: ServiceState = websocket.app.state.service
    token = websocket_token(websocket)
    generation = state.tokens.generation  # before the lookup: a drop after it is re-checked
    user = None if token is None else await asyncio.to_thread(state.tokens.user_for, token)
    # accepted first, so every client sees the close code; never with the token's subprotocol
    await websocket.accept(subprotocol=websocket_subprotocol(websocket))
    if token is None or user is None:
        await websocket.close(CLOSE_UNAUTHORIZED, _UNAUTHORIZED_REASON)
        return
    try:
        since = _parse_since(websocket.query_params.get("since"))
    except ValueError:
        await websocket.close(
            CLOSE_BAD_REQUEST, "since must be the last user_sequence you saw (an integer >= 0)"
        )
        return
    revoked, forget = state.streams.add(token, generation)
    try:
        await _stream(websocket, state, user.name, since, revoked)
    finally:
        forget()


async def _stream(
    websocket: WebSocket,
    state: ServiceState,
    user: str,
    since: int | None,
    revoked: asyncio.Event,
) -> None:
    loop = asyncio.get_running_loop()
    limit = _max_pending(state)
    queue: asyncio.Queue[object] = asyncio.Queue()
    overflowed = False

    def enqueue(event: RuntimeEvent) -> None:  # on the loop
        nonlocal overflowed
        if overflowed:
            return
        if queue.qsize() >= limit:
            overflowed = True
            queue.put_nowait(_OVERFLOW)
        else:
            queue.put_nowait(event)

    def on_event(event: RuntimeEvent) -> None:  # on the publishing thread
        with contextlib.suppress(RuntimeError):  # the loop closed under a late event
            loop.call_soon_threadsafe(enqueue, event)

    try:
        if since is not None:
            await _tell_position_if_ahead(websocket, state, user, since)
        unsubscribe = state.bus.subscribe(user, on_event, since=since)
    except EventBusError as exc:  # a subscriber limit, a closing bus: try again later
        await websocket.close(CLOSE_TOO_SLOW, exc.message[:120])
        return
    except PlannerError as exc:  # the runtime cannot serve this user at all
        await websocket.close(CLOSE_POLICY, exc.message[:120])
        return
    try:
        sender = asyncio.create_task(_send(websocket, queue, limit))
        receiver = asyncio.create_task(_drain_client(websocket))
        watcher = asyncio.create_task(_close_when_revoked(websocket, revoked))
        done, pending = await asyncio.wait(
            {sender, receiver, watcher}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
        for task in done:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                task.result()
    finally:
        unsubscribe()


async def _tell_position_if_ahead(
    websocket: WebSocket, state: ServiceState, user: str, since: int
) -> None:
    current = await asyncio.to_thread(state.bus.last_sequence, user)
    if since <= current:
        return
    notice = {
        "type": STREAM_POSITION,
        "user_sequence": current,
        "since": since,
        "message": f"since={since} is ahead of your event stream, whose last event is "
        f"{current}; nothing was replayed. Resume from user_sequence {current} (or 0 for "
        "every buffered event).",
    }
    await websocket.send_text(json.dumps(notice))


async def _send(websocket: WebSocket, queue: asyncio.Queue[object], limit: int) -> None:
    while True:
        item = await queue.get()
        if item is _OVERFLOW:
            _log.warning("event stream closed: client too slow", pending=limit)
            await websocket.close(
                CLOSE_TOO_SLOW,
                f"too slow: more than {limit} events unsent; reconnect with since=<last "
                "user_sequence>",
            )
            return
        assert isinstance(item, RuntimeEvent)
        await websocket.send_text(item.to_json())


async def _close_when_revoked(websocket: WebSocket, revoked: asyncio.Event) -> None:
    """Close the stream with 4401 once its token stops working (`server.streams` watches)."""
    await revoked.wait()
    await websocket.close(CLOSE_UNAUTHORIZED, "the API token was revoked or replaced")


async def _drain_client(websocket: WebSocket) -> None:
    """Read and ignore what the client sends, until it goes away."""
    while True:
        message = await websocket.receive()
        if message.get("type") == "websocket.disconnect":
            return
