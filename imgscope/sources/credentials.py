"""Registry credentials as Docker keeps them: ``config.json`` ``auths``, ``credHelpers``, ``credsStore``.

``docker login`` writes either the credentials themselves (``auths``, base64
``user:password``) or, with a credential store, only the host, the secret
living in a helper (``docker-credential-NAME get``, the host on stdin, JSON
on stdout).  The same lookup order as the docker CLI: a per-registry helper,
then the default store, then ``auths``.  Nothing here is ever printed.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from imgscope.errors import ImgscopeError
from imgscope.sources.registry_client import Credentials

DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")
HELPER_TIMEOUT = 30


def config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    folder = os.environ.get("DOCKER_CONFIG")
    return Path(folder) / "config.json" if folder else Path.home() / ".docker" / "config.json"


def _host_of(key: str) -> str:
    """``https://host:5000/v1/`` -> ``host:5000``: ``auths`` keys come with or without a scheme."""
    text = key.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    return text.split("/", 1)[0].lower()


def _keys(host: str) -> tuple[str, ...]:
    host = host.lower()
    if host in DOCKER_HUB_KEYS:
        return DOCKER_HUB_KEYS
    return (host,)


def _load_config() -> dict[str, Any]:
    path = config_path()
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ImgscopeError(f"{path}: cannot read the Docker credentials ({type(exc).__name__})") from exc
    return data if isinstance(data, dict) else {}


def _from_helper(helper: str, host: str) -> Credentials | None:
    """Ask ``docker-credential-HELPER get``; None when it knows nothing of the host."""
    exe = shutil.which(f"docker-credential-{helper}")
    if exe is None:
        raise ImgscopeError(f"docker-credential-{helper} is not installed (named by {config_path()} for {host})")
    for key in _keys(host):
        try:
            done = subprocess.run(
                [exe, "get"], input=key.encode(), capture_output=True, timeout=HELPER_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ImgscopeError(f"docker-credential-{helper} failed for {host} ({type(exc).__name__})") from exc
        if done.returncode != 0:
            continue  # "credentials not found in native keychain": try the next spelling
        try:
            data = json.loads(done.stdout)
        except ValueError as exc:
            raise ImgscopeError(f"docker-credential-{helper} answered for {host} with something not JSON") from exc
        if not isinstance(data, dict):
            continue  # JSON, but not the object a helper answers with: it knows nothing we can use
        user, secret = data.get("Username"), data.get("Secret")
        if isinstance(user, str) and isinstance(secret, str) and secret:
            return user, secret
    return None


def _from_auths(auths: dict[str, Any], host: str) -> Credentials | None:
    wanted = set(_keys(host))
    for key, entry in auths.items():
        if (_host_of(key) not in wanted and key not in wanted) or not isinstance(entry, dict):
            continue
        auth = entry.get("auth")
        if isinstance(auth, str) and auth:
            try:
                user, sep, password = base64.b64decode(auth).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
                raise ImgscopeError(f"{config_path()}: the auth of {key} is not base64 user:password") from exc
            if sep:
                return user, password
        name, secret = entry.get("username"), entry.get("password")
        if isinstance(name, str) and isinstance(secret, str) and secret:
            return name, secret
    return None


def lookup(host: str) -> Credentials | None:
    """The credentials ``docker login HOST`` left, or None for an anonymous pull."""
    config = _load_config()
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key in _keys(host):
            helper = helpers.get(key)
            if isinstance(helper, str) and helper:
                return _from_helper(helper, host)
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        found = _from_helper(store, host)
        if found is not None:
            return found
    auths = config.get("auths")
    return _from_auths(auths, host) if isinstance(auths, dict) else None
