from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and organisations"

    def ready(self) -> None:
        # checks, audit hooks, session records (sessions), lockout audit (lockout)
        from accounts import checks, lockout, sessions, signals  # noqa: F401
