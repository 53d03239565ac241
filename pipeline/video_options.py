"""How faces are kept steady along a clip: the options of :func:`~.video.restore_video`, checked once."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import OptionError
from .options import check_flag, check_indices, check_size, check_unit, check_whole


@dataclass(frozen=True)
class VideoOptions:
    """How faces are kept steady along a clip (what each option does, as the node and ``--help`` say it:
    :mod:`.option_help`).

    Attributes:
        landmark_window: frames whose landmarks are averaged per track (1: none).
        code_window: frames whose logits are averaged per track before the argmax
            (1: codes frame by frame, as for single images).
        code_margin: with ``code_window`` above 1, a track keeps the code a token had in the
            previous frame unless another code's averaged logit beats it by more than this (a log
            probability ratio: 0.1 asks for about 10% more likely); 0 takes the plain argmax. Near
            ties then stop flipping from frame to frame.
        feature_window: frames whose encoder features are averaged per track (1: none): the
            features the fidelity ``w`` blends into the decoder (the CFT fusion input) and the
            AdaIN statistics, taken in the aligned crops. Sensor noise and compression then stop
            reaching the output frame by frame (steadier), at the cost of detail that changes
            faster than the window (a blink, a word: softer).
        max_gap: frames a track may go unseen and still be filled in (centred mode).
        track_memory: frames a track may go unseen and still be resumed, with the same id,
            by a face reappearing where it was (gaps longer than ``max_gap`` are not filled).
        causal: no look-ahead (live streams): exponential landmarks, trailing logits.
        cut_threshold: mean absolute difference (0-1) of consecutive grey thumbnails
            above which the frame starts a new scene; every track ends there.
        match_distance: largest mean landmark distance, as a share of the face size, at
            which a face continues a track.
        tracks: restore only these track ids (the order in which people first appear);
            None for all.
    """

    landmark_window: int = 5
    code_window: int = 5
    code_margin: float = 0.1
    feature_window: int = 5
    max_gap: int = 4
    track_memory: int = 30
    causal: bool = False
    cut_threshold: float = 0.15
    match_distance: float = 0.5
    tracks: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        check_whole("landmark_window", self.landmark_window, 1, "frame", allow_none=False)
        check_whole("code_window", self.code_window, 1, "frame", allow_none=False)
        check_size("code_margin", self.code_margin, "logits")
        check_whole("feature_window", self.feature_window, 1, "frame", allow_none=False)
        check_whole("max_gap", self.max_gap, 0, "frames", allow_none=False)
        check_whole("track_memory", self.track_memory, 0, "frames", allow_none=False)
        if self.max_gap > self.track_memory:
            raise OptionError(
                f"track_memory {self.track_memory} is below max_gap {self.max_gap}: need max_gap <= track_memory"
            )
        check_flag("causal", self.causal)
        check_unit("cut_threshold", self.cut_threshold)
        if self.cut_threshold == 0:
            raise OptionError("cut_threshold must lie in (0, 1]: 0 would start a scene at every frame")
        check_size("match_distance", self.match_distance, "face sizes")
        if self.match_distance == 0:
            raise OptionError("match_distance must be above 0 (a share of the face size)")
        if self.tracks is not None:
            check_indices("tracks", self.tracks)
            object.__setattr__(self, "tracks", tuple(self.tracks))  # hashable, as a frozen option should be

    @property
    def splits_network(self) -> bool:
        """Whether faces go through the network split at its codes (``encode``, then ``decode``)."""
        return self.code_window > 1 or self.feature_window > 1

    @property
    def landmark_lookahead(self) -> int:
        return 0 if self.causal else max(self.landmark_window // 2, self.max_gap)

    @property
    def code_lookahead(self) -> int:
        """Frames placed ahead of the one restored: a whole window less one (windows shift inwards at a track's end)."""
        return 0 if self.causal else max(self.code_window, self.feature_window) - 1

    @property
    def latency(self) -> int:
        """Frames read ahead before a frame comes out."""
        return self.landmark_lookahead + self.code_lookahead
