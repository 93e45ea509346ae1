"""The MQTT topic tree: ``{prefix}/{gateway}/{kind}``; names only, no I/O."""

from __future__ import annotations

from typing import Literal, get_args

DEFAULT_PREFIX = "edgetwin/v1"

TopicKind = Literal["birth", "status", "frames", "events", "rebirth"]
KINDS: tuple[TopicKind, ...] = get_args(TopicKind)

# kind -> topic suffix under the gateway level
_SUFFIX: dict[TopicKind, str] = {
    "birth": "birth",
    "status": "status",
    "frames": "frames",
    "events": "events",
    "rebirth": "cmd/rebirth",
}
_KIND_OF: dict[str, TopicKind] = {suffix: kind for kind, suffix in _SUFFIX.items()}


def validate_gateway(gateway: str) -> str:
    """Return ``gateway`` if it can be one topic level; raise ValueError otherwise."""
    if not isinstance(gateway, str) or not gateway:
        raise ValueError("gateway id must be a non-empty string")
    if any(c in gateway for c in "/+#\0"):
        raise ValueError(f"gateway id {gateway!r} must not contain '/', '+', '#' or NUL")
    return gateway


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a topic without wildcards or outer slashes; else ValueError."""
    if (
        not isinstance(prefix, str)
        or not prefix
        or prefix.startswith("/")
        or prefix.endswith("/")
        or any(c in prefix for c in "+#\0")
    ):
        raise ValueError(f"topic prefix {prefix!r} must be non-empty, without wildcards or outer /")
    return prefix


class Topics:
    """The topics of one gateway."""

    __slots__ = ("gateway", "prefix")

    def __init__(self, prefix: str, gateway: str) -> None:
        self.prefix = validate_prefix(prefix)
        self.gateway = validate_gateway(gateway)

    def topic(self, kind: TopicKind) -> str:
        """Return the topic of ``kind`` for this gateway."""
        return f"{self.prefix}/{self.gateway}/{_SUFFIX[kind]}"

    @property
    def birth(self) -> str:
        """Retained birth (point table of the current session)."""
        return self.topic("birth")

    @property
    def status(self) -> str:
        """Retained online/offline status; the offline one is the MQTT will."""
        return self.topic("status")

    @property
    def frames(self) -> str:
        """State frames."""
        return self.topic("frames")

    @property
    def events(self) -> str:
        """Alarm and device events."""
        return self.topic("events")

    @property
    def rebirth(self) -> str:
        """Command asking the gateway to publish its birth and a snapshot again."""
        return self.topic("rebirth")

    def __repr__(self) -> str:
        return f"Topics({self.prefix!r}, {self.gateway!r})"


def parse_topic(prefix: str, topic: str) -> tuple[str, TopicKind] | None:
    """Return ``(gateway, kind)`` for a topic of the tree under ``prefix``, else None."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    gateway, sep, suffix = topic[len(head) :].partition("/")
    kind = _KIND_OF.get(suffix)
    if not sep or kind is None:
        return None
    try:
        validate_gateway(gateway)
    except ValueError:
        return None
    return gateway, kind


def subscription(prefix: str, kind: TopicKind) -> str:
    """Return the filter matching ``kind`` for every gateway under ``prefix``."""
    return f"{validate_prefix(prefix)}/+/{_SUFFIX[kind]}"


def subscriptions(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Return the filters a consumer subscribes to, births and status before frames."""
    return [subscription(prefix, kind) for kind in ("birth", "status", "events", "frames")]
