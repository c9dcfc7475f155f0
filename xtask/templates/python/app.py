"""{{name}}: a Sluice plugin in Python (componentize-py).

It authenticates clients against the `users` of its configuration
(`name:password` pairs, comma-separated) and leaves clients it does not
know to the next plugin. Replace the hooks with your own, and list the
hooks you export in world.wit.

componentize-py runs this module's top level at build time, so call the
host only from hooks (the broker calls `Lifecycle.init` first in every
instance).
"""

import hmac

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    Denial_InvalidCredentials,
    M5Denial,
    RegisterVerdict_Error,
    RegisterVerdict_Next,
    RegisterVerdict_Ok,
    RegisterVerdictM5_Error,
    RegisterVerdictM5_Next,
    RegisterVerdictM5_Ok,
)

USERS = {}


def parse_users(text):
    users = {}
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, password = entry.partition(":")
        if not sep or not name:
            raise ValueError(f"users: {entry!r} is not name:password")
        users[name] = password.encode()
    return users


def check(username, password):
    """"ok", "wrong" or "unknown"."""
    expected = USERS.get(username) if username is not None else None
    if expected is None:
        return "unknown"
    if password is not None and hmac.compare_digest(password, expected):
        return "ok"
    return "wrong"


class Lifecycle(exports.Lifecycle):
    def init(self) -> None:
        global USERS
        try:
            USERS = parse_users(dict(host.config()).get("users", ""))
        except ValueError as e:
            raise Err(str(e))
        host.log(host.LogLevel.INFO, f"{len(USERS)} users configured")


class AuthOnRegister(exports.AuthOnRegister):
    def auth_on_register(self, conn, subscriber_id, username, password, clean_session):
        result = check(username, password)
        if result == "ok":
            return RegisterVerdict_Ok(None)
        if result == "unknown":
            return RegisterVerdict_Next()
        return RegisterVerdict_Error(Denial_InvalidCredentials("wrong password"))


class AuthOnRegisterM5(exports.AuthOnRegisterM5):
    def auth_on_register_m5(
        self, conn, subscriber_id, username, password, clean_start, properties
    ):
        result = check(username, password)
        if result == "ok":
            return RegisterVerdictM5_Ok(None)
        if result == "unknown":
            return RegisterVerdictM5_Next()
        return RegisterVerdictM5_Error(
            M5Denial(reason_code=0x86, reason_string=None, server_reference=None)
        )
