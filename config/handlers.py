"""A lean Django ASGI handler for machine clients (/dicomweb/).

Django runs each `MiddlewareMixin` middleware's hooks through `sync_to_async` on one shared
thread, twice per request; with a dozen of them a rendered frame spent ~7 ms hopping threads
and the whole server capped near 100 requests/s. API clients need neither sessions'
middleware, CSRF, messages nor clickjacking headers on HTML, so their requests take a short,
fully async chain; `archive.dicomweb.auth` authenticates bearer tokens and browser sessions
itself, and `ApiSecurityHeadersMiddleware` sets the same security headers.
"""

from __future__ import annotations

import asyncio
import functools

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import connections
from django.urls import Resolver404, resolve, set_script_prefix

API_MIDDLEWARE = [
    "config.middleware.RequestIdMiddleware",
    "config.middleware.ApiSecurityHeadersMiddleware",
]


def resolve_scope(scope):
    """Resolve an ASGI scope's path (without its root path) to a URL match, or None."""
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    try:
        return resolve(path)
    except Resolver404:
        return None


def _thread_has_db_connection() -> bool:
    """Whether this (event loop) thread holds an open database connection.

    Never in production (the ORM refuses to run on the loop); it does in tests, whose event
    loop runs on the test's own thread, and there the request signals must not close it.
    """
    return any(conn.connection is not None for conn in connections.all(initialized_only=True))


def _serves_async_view(scope) -> bool:
    return _path_serves_async_view(scope.get("path", ""), scope.get("root_path", ""))


@functools.lru_cache(maxsize=4096)
def _path_serves_async_view(path: str, root_path: str) -> bool:
    # A frame client asks for the same few URLs hundreds of times a second.
    match = resolve_scope({"path": path, "root_path": root_path})
    return match is not None and iscoroutinefunction(match.func)


class LeanASGIHandler(ASGIHandler):
    """Django's ASGI handler with `API_MIDDLEWARE` instead of `settings.MIDDLEWARE`.

    Requests for async views skip Django's per-request ``ThreadSensitiveContext``: it starts
    and joins a thread for every request (~0.3 ms, a tenth of a rendered frame's budget) only
    to run the request signals' receivers. Async DICOMweb views do their database work with
    ``thread_sensitive=False`` anyway, so what is left for that thread (closing the signals'
    connections, ``response.close``) runs on asgiref's shared sync thread instead. Sync views
    (QIDO) keep their own thread per request, so they still run in parallel.
    """

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and _serves_async_view(scope):
            await self._handle_async_view(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _handle_async_view(self, scope, receive, send):
        """``ASGIHandler.handle`` (Django 6.0) with the request signals sent inline.

        Django sends ``request_started``, and ``request_finished`` from ``response.close()``,
        through ``sync_to_async``: two hops to a sync thread and back per request, only to run
        ``reset_queries``, ``close_old_connections`` and ``close_caches`` for *that* thread's
        connections. An async API view does its database work on executor threads and the
        event loop thread never connects, so running them here does the same work without the
        hops (an in-process harness of rendered frames went from 550 to ~770 requests/s). If this thread
        does hold a connection (tests run the loop on their own thread), Django's way is kept,
        so the signals never close it. The rest is Django's code, unchanged: re-check it when
        upgrading Django.
        """
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        inline = not _thread_has_db_connection()
        if inline:
            signals.request_started.send(sender=self.__class__, scope=scope)
        else:
            await signals.request_started.asend(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            await self._close(error_response, inline)
            return

        async def process_request(request, send):
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client disconnected during send_response
            return response

        # As Django: stop the view if the client disconnects meanwhile.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            if inline:
                signals.request_finished.send(sender=self.__class__)
            else:
                await signals.request_finished.asend(sender=self.__class__)
        else:
            await self._close(response, inline)
        body_file.close()

    @staticmethod
    async def _close(response, inline: bool) -> None:
        if inline:
            response.close()
        else:
            await sync_to_async(response.close)()

    def load_middleware(self, is_async=False):
        # BaseHandler reads settings.MIDDLEWARE; swap it only while the chain is built, at start-up.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = API_MIDDLEWARE
        try:
            super().load_middleware(is_async=is_async)
        finally:
            settings.MIDDLEWARE = full


class PathRouter:
    """Send HTTP requests under `prefix` to `api_app`, everything else to `default_app`."""

    def __init__(self, default_app, api_app, prefix: str = "/dicomweb/"):
        self.default_app = default_app
        self.api_app = api_app
        self.prefix = prefix

    async def __call__(self, scope, receive, send):
        app = self.api_app if scope.get("path", "").startswith(self.prefix) else self.default_app
        return await app(scope, receive, send)
