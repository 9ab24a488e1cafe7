from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@login_required
def home(request):
    memberships = request.user.memberships.select_related("organization").order_by("organization__name", "role")
    return render(request, "viewer/home.html", {"memberships": memberships})
