"""A tiny OpenID provider (django-oauth-toolkit) that the OIDC tests run in a subprocess.

It is a separate Django project with its own settings module and SQLite database, so it runs in
its own process on a free loopback port; Lightbox talks to it over real HTTP.
"""
