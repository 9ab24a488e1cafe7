"""Answer 429 to an address that used up its share-failure budget, before the rest of the stack.

# SECURITY: a scanner hammering /s/<token> then costs one cache read per request: no session,
# CSRF, authentication or database work happens for it.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async

from sharing import ratelimit

GUARDED_PREFIXES = ("/s/", "/share/verify/", "/share/code/")


class ShareRateLimitMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        if request.path.startswith(GUARDED_PREFIXES) and ratelimit.is_blocked(request):
            return ratelimit.too_many(request)
        return self.get_response(request)

    async def __acall__(self, request):
        if request.path.startswith(GUARDED_PREFIXES) and await sync_to_async(ratelimit.is_blocked)(request):
            return ratelimit.too_many(request)
        return await self.get_response(request)
