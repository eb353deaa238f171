"""What the user typed -> where the image comes from.

Explicit transports win (``docker://``, ``podman://``, ``registry://``,
``docker-archive:``, ``oci:``, ``oci-archive:``); otherwise an existing path is an archive or
layout and anything else is a daemon image name.  In ``PATH:TAG`` the path is
the longest prefix that exists, so paths containing colons still work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imgscope.errors import ImgscopeError
from imgscope.model import Image
from imgscope.sources.common import LoadOptions

DAEMON = "docker"
PODMAN = "podman"
ARCHIVE = "docker-archive"
OCI = "oci"
OCI_ARCHIVE = "oci-archive"
PATH = "path"
REGISTRY = "registry"


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed REF: the transport, the path or image name, and an optional tag."""

    transport: str
    location: str
    tag: str | None = None

    @property
    def is_daemon(self) -> bool:
        return self.transport in (DAEMON, PODMAN)


def _split_path_tag(text: str, transport: str) -> Reference:
    """The longest prefix of ``text`` that exists is the path; what follows ``:`` is the tag."""
    if Path(text).exists():
        return Reference(transport, text)
    pos = len(text)
    while (pos := text.rfind(":", 0, pos)) > 0:
        if Path(text[:pos]).exists():
            return Reference(transport, text[:pos], text[pos + 1 :] or None)
    raise ImgscopeError(f"{transport}:{text}: no such file or directory")


def parse(text: str) -> Reference:
    """Parse a REF as DESIGN.md defines it."""
    if not text:
        raise ImgscopeError("empty image reference")
    if text.startswith("docker://"):
        return Reference(DAEMON, text[len("docker://") :])
    if text.startswith("podman://"):
        return Reference(PODMAN, text[len("podman://") :])
    if text.startswith("registry://"):
        return Reference(REGISTRY, text[len("registry://") :])
    for prefix, transport in (("docker-archive:", ARCHIVE), ("oci-archive:", OCI_ARCHIVE), ("oci:", OCI)):
        if text.startswith(prefix):
            return _split_path_tag(text[len(prefix) :], transport)
    if Path(text).exists():
        return Reference(PATH, text)
    if "/" in text or text.startswith("."):
        # Looks like a path: a path with a tag, or a missing file.
        pos = len(text)
        while (pos := text.rfind(":", 0, pos)) > 0:
            if Path(text[:pos]).exists():
                return Reference(PATH, text[:pos], text[pos + 1 :] or None)
        if text.endswith((".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz")) or text.startswith((".", "/")):
            raise ImgscopeError(f"{text}: no such file or directory")
    return Reference(DAEMON, text)


def load(text: str, options: LoadOptions) -> Image:
    """Load the image a REF names, from whichever source it names."""
    ref = parse(text)
    if ref.is_daemon:
        from imgscope.sources import daemon

        return daemon.load(ref.location, text, options, podman=ref.transport == PODMAN)
    if ref.transport == REGISTRY:
        from imgscope.sources import registry

        return registry.load(text, options)
    from imgscope.sources import archive

    path = Path(ref.location)
    if ref.transport == OCI and not path.is_dir():
        raise ImgscopeError(f"oci:{ref.location}: not a directory (use oci-archive: for a tar)")
    if ref.transport in (OCI_ARCHIVE, ARCHIVE) and path.is_dir():
        raise ImgscopeError(f"{ref.transport}:{ref.location}: is a directory, not an archive")
    return archive.load_path(path, text, ref.tag, options)
