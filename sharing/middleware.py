"""Answer 429 to an address that used up its share-failure budget, before the rest of the stack.

# SECURITY: a scanner hammering /s/<token> then costs one cache read per request: no session,
# CSRF, authentication or database work happens for it.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async

from config.middleware import HybridMiddleware
from sharing import ratelimit

GUARDED_PREFIXES = ("/s/", "/share/verify/", "/share/code/")


class ShareRateLimitMiddleware(HybridMiddleware):
    def handle(self, request):
        if request.path.startswith(GUARDED_PREFIXES) and ratelimit.is_blocked(request):
            return ratelimit.too_many(request)
        return self.get_response(request)

    async def __acall__(self, request):
        if request.path.startswith(GUARDED_PREFIXES) and await sync_to_async(ratelimit.is_blocked)(request):
            return ratelimit.too_many(request)
        return await self.get_response(request)
