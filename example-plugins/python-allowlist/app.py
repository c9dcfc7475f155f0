"""Example plugin in Python: authentication against a list of users.

Each user has a salt and the SHA-256 of salt + password; a client that
sends a known username is accepted with the right password and refused
with a wrong one. What happens to other clients (unknown usernames, or no
username) is configurable. See README.md for the configuration and the
build command.

componentize-py runs this module's top level at build time (the component
ships a snapshot of the initialised interpreter), so nothing here may call
the host before `Lifecycle.init`, which the broker calls in every new
instance before any hook.
"""

import hashlib
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

# MQTT 5 reason code 0x86, "bad user name or password".
BAD_USERNAME_OR_PASSWORD = 0x86

# Configuration keys this plugin knows; any other key is an error.
KNOWN_KEYS = ("users", "unknown")


class Config:
    """The parsed configuration: users and the unknown-user policy."""

    def __init__(self, users, unknown):
        # username -> (salt bytes, sha256(salt + password) digest)
        self.users = users
        # "deny" or "next"
        self.unknown = unknown


def parse_config(pairs):
    """Parses `host.config()`; raises ValueError naming the problem."""
    settings = dict(pairs)
    for key in settings:
        if key not in KNOWN_KEYS:
            raise ValueError(
                f"unknown configuration key {key!r} (known: {', '.join(KNOWN_KEYS)})"
            )
    users = {}
    for entry in settings.get("users", "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3:
            raise ValueError(f"users: {entry!r} is not name:salt:hexsha256")
        name, salt, hexdigest = parts
        if not name:
            raise ValueError(f"users: {entry!r} has an empty name")
        if name in users:
            raise ValueError(f"users: {name!r} appears twice")
        try:
            digest = bytes.fromhex(hexdigest)
        except ValueError:
            digest = b""
        if len(digest) != hashlib.sha256().digest_size:
            raise ValueError(
                f"users: the hash of {name!r} is not 64 hexadecimal digits"
            )
        users[name] = (salt.encode(), digest)
    unknown = settings.get("unknown", "deny").strip()
    if unknown not in ("deny", "next"):
        raise ValueError(f'unknown: {unknown!r} is neither "deny" nor "next"')
    return Config(users, unknown)


# Set by `Lifecycle.init` in each instance.
CONFIG = None

# Hashed for unknown users, so that their refusal takes as long as a wrong
# password and does not reveal which usernames exist.
DUMMY_USER = (b"", bytes(32))


def check(username, password):
    """The decision for one client: ("ok", None), ("next", None) or
    ("deny", why)."""
    if CONFIG is None:
        # Unreachable after a successful init; refuse rather than guess.
        return ("deny", "python-allowlist is not configured")
    user = CONFIG.users.get(username) if username is not None else None
    salt, expected = user if user is not None else DUMMY_USER
    actual = hashlib.sha256(salt + (password or b"")).digest()
    matches = hmac.compare_digest(actual, expected)
    if user is None:
        if CONFIG.unknown == "next":
            return ("next", None)
        return ("deny", f"unknown user {username!r}")
    if password is None or not matches:
        return ("deny", f"wrong password for {username!r}")
    return ("ok", None)


class Lifecycle(exports.Lifecycle):
    def init(self) -> None:
        global CONFIG
        try:
            CONFIG = parse_config(host.config())
        except ValueError as e:
            raise Err(str(e))
        host.log(
            host.LogLevel.INFO,
            f"python-allowlist: {len(CONFIG.users)} users, unknown users: {CONFIG.unknown}",
        )


class AuthOnRegister(exports.AuthOnRegister):
    def auth_on_register(self, conn, subscriber_id, username, password, clean_session):
        decision, why = check(username, password)
        if decision == "ok":
            return RegisterVerdict_Ok(None)
        if decision == "next":
            return RegisterVerdict_Next()
        host.log(host.LogLevel.DEBUG, f"refused {subscriber_id.client_id}: {why}")
        # CONNACK 4, "bad user name or password"; the text is only logged.
        return RegisterVerdict_Error(Denial_InvalidCredentials(why))


class AuthOnRegisterM5(exports.AuthOnRegisterM5):
    def auth_on_register_m5(
        self, conn, subscriber_id, username, password, clean_start, properties
    ):
        decision, why = check(username, password)
        if decision == "ok":
            return RegisterVerdictM5_Ok(None)
        if decision == "next":
            return RegisterVerdictM5_Next()
        host.log(host.LogLevel.DEBUG, f"refused {subscriber_id.client_id}: {why}")
        # The reason string goes to the client, so it does not say which of
        # username and password was wrong; `why` is only logged.
        return RegisterVerdictM5_Error(
            M5Denial(
                reason_code=BAD_USERNAME_OR_PASSWORD,
                reason_string="bad user name or password",
                server_reference=None,
            )
        )
