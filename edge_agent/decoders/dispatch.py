"""Which profile decodes a frame: try the profiles of the frame's transport, first match wins.

Pure: built once from the loaded profiles, then ``decode(transport, frame)`` per frame. The
order is deterministic: profiles with a narrower ``match`` (more matcher keys) come first, so a
specific profile (``amulet-ibeacon``, one UUID) wins over a catch-all (``ibeacon-generic``),
then by profile id. A ``DecodeError`` from the profile being tried propagates: the frame was
for that decoder but is malformed, and the agent dead-letters it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from edge_agent.decoders import Decoder, get_decoder
from shouhu.model import RawFrame, Reading
from shouhu.profiles import Profile


def profile_order(profile: Profile) -> tuple[int, str]:
    """Sort key: most specific ``match`` first, then id."""
    return (-len(profile.match), profile.id)


class FrameDecoder:
    """Decodes frames with a fixed set of profiles (the ones a gateway runs)."""

    def __init__(self, profiles: Mapping[str, Profile]) -> None:
        self.profiles = dict(profiles)
        # transport -> [(profile, decode function)], in trial order; decoders are imported now
        # so a missing decoder module fails at start-up, not on the first frame.
        self._by_transport: dict[str, list[tuple[Profile, Decoder]]] = {}
        for profile in sorted(self.profiles.values(), key=profile_order):
            self._by_transport.setdefault(profile.transport, []).append(
                (profile, get_decoder(profile.decoder))
            )

    def candidates(self, transport: str) -> Sequence[Profile]:
        """The profiles tried for ``transport``, in order."""
        return [profile for profile, _ in self._by_transport.get(transport, [])]

    def decode(self, transport: str, frame: RawFrame) -> tuple[Profile | None, list[Reading]]:
        """``(profile, readings)`` of the first profile that matches, or ``(None, [])``."""
        for profile, decode in self._by_transport.get(transport, []):
            readings = list(decode(frame, profile))
            if readings:
                return profile, readings
        return None, []
