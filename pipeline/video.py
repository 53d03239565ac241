"""Video: the same face from frame to frame.

Restoring each frame on its own makes faces shimmer: the detector's landmarks jitter by a
pixel or so, the aligned crop moves with them, and half a grey level in a crop can flip
codes. Here faces are tracked across frames (landmark distance; a scene cut ends every
track), landmarks are smoothed along each track and short detector misses are filled by
interpolation, each face's codes are chosen from the transformer's logits averaged over
a few frames of its track, and the encoder features that the fidelity ``w`` blends back in
are averaged over a few frames of the track too (in the aligned crops, where the face stands
still), so noise that differs from frame to frame does not reach the output. Frames stream
through: a file is held only ``latency`` frames ahead, whatever its length.

Windows are centred (no lag on smooth motion) unless ``causal`` is set for live streams:
then landmarks follow an exponential average (a lag of (window - 1) / 2 frames on steady
motion) and logits and features a trailing average, with no look-ahead and no gap filling.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..codeformer_arch import Encoded
from ..models.checkpoint import COLORIZATION
from ..models.cpu_memory import keep_freed_cpu_memory
from .conversion import Picture
from .detection import Detection, FaceDetector, load_detector
from .errors import InputError, OptionError
from .faces import detect_in_image, in_input_pixels, select_faces
from .flows import working_scale
from .geometry import FACE_SIZE, affine_in_input_pixels, crop_face, estimate_alignment
from .images import as_float_image, enlarged, image_is_grey, normalise, to_uint8_rgb
from .inference import RestorationNetwork, as_restored_crops, device_of, dtype_of, faces_per_forward, run_network
from .options import RestoreOptions
from .paste import PasteSettings, paste_faces
from .restore import with_upsamplers
from .results import FaceInfo, RestoreResult
from .tasks import as_restored_by, resolve_task, takes_fidelity, task_adain, task_fidelity
from .tracking import Tracker, thumbnail
from .video_options import VideoOptions


@runtime_checkable
class SplitNetwork(Protocol):
    """A network split at its codes (``CodeFormer.encode`` / ``decode``), so codes can be chosen across frames."""

    def encode(self, x: torch.Tensor) -> Encoded: ...

    def decode(self, encoded: Encoded, codes: torch.Tensor, w: torch.Tensor, adain: bool) -> torch.Tensor: ...


@dataclass
class _Frame:
    """One frame on its way through: what was seen, where faces are placed, what the network made."""

    index: int
    picture: torch.Tensor | None  # None once restored
    rgb: np.ndarray | None  # None once cropped
    grey: bool
    observed: dict[int, Detection]  # in the pixels of ``rgb``: the frame, enlarged ``scale`` times
    scale: float = 1.0
    faces: list[FaceInfo] = field(default_factory=list)
    crops: np.ndarray | None = None
    logits: dict[int, torch.Tensor] = field(default_factory=dict)
    encoded: list[Encoded] | None = None  # by chunk


def restore_video(
    frames: Iterable[Picture] | torch.Tensor | np.ndarray,
    model: RestorationNetwork,
    options: RestoreOptions | None = None,
    video: VideoOptions | None = None,
) -> Iterator[RestoreResult]:
    """Restore the faces of a clip, frame by frame in order, one result per frame.

    ``frames`` is a (T, H, W, C) batch (ComfyUI's IMAGE of a video, or an array) or any iterable
    of frames (tensors, arrays or PIL images, as :func:`restore_faces` takes them), e.g. a
    decoder's (a single (H, W, C) array is refused, not read as H frames); errors name the frame
    by its number. Each result holds one image (``result.images_like(frame)`` gives it in the
    frame's kind), and its faces carry their ``track_id``. Frames without faces come back
    unchanged. With ``code_window`` or ``feature_window`` above 1 the model must be a CodeFormer
    (it is split at its codes); other face restorers (GFPGAN, RestoreFormer) restore each frame's
    faces on their own, placed by the steadied landmarks, and ignore those two windows.
    """
    video = video or VideoOptions()
    options = options or RestoreOptions()
    if video.splits_network and not takes_fidelity(model):  # GFPGAN, RestoreFormer: no codes or features to steady
        video = dataclasses.replace(video, code_window=1, feature_window=1)
    if video.splits_network and not isinstance(model, SplitNetwork):
        raise TypeError(
            f"averaging codes or features over frames needs a CodeFormer (with encode and decode); "
            f"{type(model).__name__} has neither: use code_window=1 and feature_window=1"
        )
    if isinstance(frames, (torch.Tensor, np.ndarray)) and frames.ndim != 4:
        raise InputError(
            f"frames must be a (T, H, W, C) batch or an iterable of frames; got one array of shape "
            f"{tuple(frames.shape)}: pass a single frame as [frame] (or frame[None])"
        )
    if options.has_aligned or options.task == "inpainting" or options.inpaint_masks is not None:
        raise ValueError("video restores detected faces in whole frames; has_aligned and inpainting are for images")
    if options.regions is not None or options.selection_masks is not None:
        raise OptionError(
            "regions and selection_masks choose faces in single images and are not applied to video frames; in a "
            "video choose faces by track (VideoOptions.tracks, or face_selection as a list of track indices)"
        )
    if not (options.face_selection == "all" or not isinstance(options.face_selection, str)):
        raise ValueError("in a video, choose faces by track index (face_selection as a list), or all of them")
    options = dataclasses.replace(with_upsamplers(options, device_of(model)), task=resolve_task(model, options))
    detector = options.detector
    if isinstance(detector, str):
        detector = load_detector(detector, device_of(model), options.weights_dir)
    stream = _Stream(model, options, video, detector)
    with keep_freed_cpu_memory(device_of(model)):  # from frame to frame, until the clip ends
        for frame in frames if not isinstance(frames, torch.Tensor) or frames.ndim != 4 else iter(frames):
            stream.add(frame)
            yield from stream.ready()
        yield from stream.finish()


class _Stream:
    """The frames in flight and the three steps each goes through: place faces, encode, restore."""

    def __init__(
        self, model: RestorationNetwork, options: RestoreOptions, video: VideoOptions, detector: FaceDetector
    ) -> None:
        self.model, self.options, self.video, self.detector = model, options, video, detector
        self.paste: PasteSettings | None = None  # made, its parser loaded, when the first face is found
        self.tracker = Tracker(video.track_memory, video.match_distance)
        self.frames: deque[_Frame] = deque()  # past frames still needed as context, then those in flight
        self.seen = 0
        self.placed = 0  # frames whose faces are placed and encoded
        self.emitted = 0
        self.previous_thumbnail: np.ndarray | None = None
        self.smoothed: dict[int, np.ndarray] = {}  # causal: the running landmark average per track
        self.previous_codes: dict[int, torch.Tensor] = {}  # per track, the codes of the frame emitted last
        # size filters and max_faces apply per frame; face indices mean track ids
        self.filters = dataclasses.replace(options, face_selection="all")
        self.chunk = faces_per_forward(model, options)

    def add(self, image: Picture) -> None:
        picture = as_float_image(image, self.seen, "frame")
        rgb = to_uint8_rgb(picture)
        grey = image_is_grey(picture, rgb, self.options.rules)
        small = thumbnail(rgb)
        cut = self.previous_thumbnail is not None and (
            small.shape != self.previous_thumbnail.shape
            or float(np.abs(small - self.previous_thumbnail).mean()) > self.video.cut_threshold
        )
        if cut:  # tracks end here: the tracker gives the next faces new ids
            self.smoothed.clear()
        self.previous_thumbnail = small
        scale = working_scale(picture.shape[0], picture.shape[1], self.options.rules)
        if scale != 1.0:  # the flow enlarges small frames first; faces are found and cropped there
            rgb = to_uint8_rgb(enlarged(picture, scale))
        observed = self.tracker.update(self.seen, detect_in_image(self.detector, rgb, self.options), cut)
        self.frames.append(_Frame(self.seen, picture, rgb, grey, observed, scale=scale))
        self.seen += 1

    def ready(self, final: bool = False) -> Iterator[RestoreResult]:
        lookahead = self.video.landmark_lookahead
        while self.placed < self.seen and (final or self.seen - 1 - self.placed >= lookahead):
            self._place_and_encode(self._frame(self.placed))
            self.placed += 1
        while self.emitted < self.placed and (final or self.placed - 1 - self.emitted >= self.video.code_lookahead):
            yield self._restore(self._frame(self.emitted))
            self.emitted += 1
        video = self.video
        keep = max(video.landmark_window, video.code_window, video.feature_window, video.max_gap + 1)
        while self.frames and self.frames[0].index < self.emitted - keep:
            self.frames.popleft()

    def finish(self) -> Iterator[RestoreResult]:
        yield from self.ready(final=True)

    def _frame(self, index: int) -> _Frame:
        return self.frames[index - self.frames[0].index]

    def _held(self) -> range:
        """Indices of the frames held now (context behind, frames in flight ahead)."""
        return range(self.frames[0].index, self.seen)

    # --- step 1: where each face is (smoothed, gaps filled) and its crop -------------------------------

    def _place_and_encode(self, frame: _Frame) -> None:
        placed = self._placed_faces(frame)
        height, width = frame.picture.shape[:2]
        kept = select_faces(list(placed.values()), self.filters, height, width)
        wanted = self.video.tracks
        if wanted is None and not isinstance(self.options.face_selection, str):
            wanted = tuple(self.options.face_selection)
        selected = [(tid, d) for tid, d in placed.items() if d in kept and (wanted is None or tid in wanted)]
        ranks = {tid: rank for rank, tid in enumerate(sorted(frame.observed, key=lambda t: -frame.observed[t].score))}
        crops = []
        for tid, detection in sorted(selected, key=lambda item: item[1].centre):
            affine = estimate_alignment(np.array(detection.landmarks))
            if affine is None:
                continue
            crops.append(crop_face(frame.rgb, affine))
            placed_face = in_input_pixels(detection, frame.scale)
            frame.faces.append(
                FaceInfo(
                    image_index=0,
                    box=placed_face.box,
                    score=detection.score,
                    landmarks=placed_face.landmarks,
                    face_size=placed_face.size,
                    fidelity=task_fidelity(self.options.task, self.options.fidelity_for(placed_face.size)),
                    affine=tuple(tuple(float(v) for v in row) for row in affine_in_input_pixels(affine, frame.scale)),
                    grey=frame.grey and self.options.task != COLORIZATION,
                    detection_rank=ranks.get(tid, len(ranks) + tid),
                    track_id=tid,
                )
            )
        frame.crops = np.stack(crops) if crops else np.zeros((0, FACE_SIZE, FACE_SIZE, 3), np.uint8)
        frame.rgb = None  # cropped: the uint8 copy is no longer needed
        if frame.faces and (self.paste is None or self.paste.parser is None) and self.options.uses_parse_mask:
            self.paste = PasteSettings.of(self.options, device_of(self.model))  # the parser, before the network
        if self.video.splits_network and frame.faces:
            self._encode(frame)

    def _placed_faces(self, frame: _Frame) -> dict[int, Detection]:
        """Each track's face in ``frame``: seen (or, centred, filled between sightings), then smoothed."""
        tracks = set(frame.observed)
        if not self.video.causal:
            tracks |= {tid for tid in self._tracks_near(frame.index) if self._position(tid, frame.index) is not None}
        placed = {}
        for tid in sorted(tracks):
            here = self._position(tid, frame.index)
            if here is None:
                continue
            if self.video.causal:
                smoothed = self._causal_landmarks(tid, here)
            else:
                smoothed = self._centred_landmarks(tid, frame.index)
            placed[tid] = dataclasses.replace(here, landmarks=tuple(map(tuple, smoothed.tolist())))
        return placed

    def _tracks_near(self, index: int) -> set[int]:
        near = range(
            max(index - self.video.max_gap, self.frames[0].index), min(index + self.video.max_gap + 1, self.seen)
        )
        return {tid for i in near for tid in self._frame(i).observed}

    def _position(self, tid: int, index: int) -> Detection | None:
        """The track's face at ``index``: as seen, or interpolated across a gap of at most ``max_gap``.

        Track ids never cross a scene cut (the tracker starts new ones), so neither does this.
        """
        held = self._held()
        if index not in held:
            return None
        seen = self._frame(index).observed.get(tid)
        if seen is not None or self.video.causal:
            return seen
        before = next((i for i in range(index - 1, max(held.start, index - self.video.max_gap - 1) - 1, -1)
                       if tid in self._frame(i).observed), None)  # fmt: skip
        after = next((i for i in range(index + 1, min(held.stop, index + self.video.max_gap + 2))
                      if tid in self._frame(i).observed), None)  # fmt: skip
        if before is None or after is None or after - before - 1 > self.video.max_gap:
            return None
        share = (index - before) / (after - before)
        a, b = self._frame(before).observed[tid], self._frame(after).observed[tid]
        box = tuple(float(x + share * (y - x)) for x, y in zip(a.box, b.box, strict=True))
        marks = np.array(a.landmarks) + share * (np.array(b.landmarks) - np.array(a.landmarks))
        return Detection(box=box, score=min(a.score, b.score), landmarks=tuple(map(tuple, marks.tolist())))

    def _centred_landmarks(self, tid: int, index: int) -> np.ndarray:
        """Average over the widest window centred on ``index`` that the track fills on both sides."""
        positions = [np.array(self._position(tid, index).landmarks)]
        for step in range(1, self.video.landmark_window // 2 + 1):
            before, after = self._position(tid, index - step), self._position(tid, index + step)
            if before is None or after is None:
                break
            positions += [np.array(before.landmarks), np.array(after.landmarks)]
        return np.mean(positions, axis=0)

    def _causal_landmarks(self, tid: int, here: Detection) -> np.ndarray:
        weight = 2 / (self.video.landmark_window + 1)
        seen = np.array(here.landmarks)
        previous = self.smoothed.get(tid)
        self.smoothed[tid] = seen if previous is None else weight * seen + (1 - weight) * previous
        return self.smoothed[tid]

    # --- step 2: the code path of each face --------------------------------------------------------------

    def _encode(self, frame: _Frame) -> None:
        """Encode the frame's faces in chunks of the usual size (so a face's numbers match a single image's)."""
        device, dtype = device_of(self.model), dtype_of(self.model)
        faces = torch.from_numpy(frame.crops)
        frame.encoded = []
        with torch.inference_mode():
            for start in range(0, len(faces), self.chunk):
                frame.encoded.append(self.model.encode(normalise(faces[start : start + self.chunk]).to(device, dtype)))
        logits = torch.cat([encoded.logits for encoded in frame.encoded])
        frame.logits = {face.track_id: logits[row] for row, face in enumerate(frame.faces)}

    # --- step 3: codes from the track's logits, then the image ---------------------------------------

    def _restore(self, frame: _Frame) -> RestoreResult:
        if not frame.faces:
            restored = torch.zeros((0, FACE_SIZE, FACE_SIZE, 3))
            self.previous_codes = {}
        elif not self.video.splits_network:
            restored = run_network(self.model, frame.crops, [face.fidelity for face in frame.faces], self.options)
        else:
            codes = self._codes(frame)
            fidelities = torch.tensor([face.fidelity for face in frame.faces])
            adain = task_adain(self.options.task, self.options.adain)
            outputs = []
            with torch.inference_mode():
                for number, encoded in enumerate(frame.encoded):
                    rows = slice(number * self.chunk, (number + 1) * self.chunk)
                    features = self._steady_features(frame, number, encoded)
                    out = self.model.decode(features, codes[rows].to(encoded.logits.device), fidelities[rows], adain)
                    outputs.append(as_restored_crops(out, rows.start, len(frame.faces)))
            restored = torch.cat(outputs)
        if self.paste is None:  # no face yet, or no parse mask: nothing to load
            self.paste = PasteSettings.of(self.options, device_of(self.model), faces=False)
        result = paste_faces([frame.picture], frame.faces, restored, self.paste)
        result.faces = as_restored_by(self.model, result.faces)
        frame.picture, frame.crops = None, None  # only the small per-face data stays, and the features ...
        behind = self.video.feature_window - 1
        if frame.index - behind in self._held():  # ... while a later frame's window may still reach them
            self._frame(frame.index - behind).encoded = None
        return result

    def _codes(self, frame: _Frame) -> torch.Tensor:
        """Each face's codes from its track's averaged logits, keeping last frame's code on near ties."""
        chosen = []
        for face in frame.faces:
            logits = self._averaged_logits(face.track_id, frame.index)
            codes = logits.argmax(dim=-1)
            previous = self.previous_codes.get(face.track_id)
            if previous is not None and self.video.code_margin > 0:
                gain = logits.gather(-1, codes[:, None]) - logits.gather(-1, previous[:, None])
                codes = torch.where(gain[:, 0] > self.video.code_margin, codes, previous)
            chosen.append(codes)
        self.previous_codes = {face.track_id: codes for face, codes in zip(frame.faces, chosen, strict=True)}
        return torch.stack(chosen)

    def _averaged_logits(self, tid: int, index: int) -> torch.Tensor:
        """Mean logits of the track over frames around ``index``."""
        window = self._track_window(tid, index, self.video.code_window)
        return torch.stack([self._frame(i).logits[tid] for i in window]).mean(dim=0)

    def _track_window(self, tid: int, index: int, size: int) -> list[int]:
        """Frames of the track averaged for ``index``: ``size`` of them, centred, and shifted inwards where the
        track starts or ends (a cut, a face gone; in the aligned crops a shift moves no face, so the first
        frames of a shot get the full window and stay as steady as the rest); trailing when causal."""
        if self.video.causal:
            window = [index]
            while len(window) < size and self._encoded_at(tid, window[-1] - 1):
                window.append(window[-1] - 1)
            return window
        first, last = index, index
        while first > index - size + 1 and self._encoded_at(tid, first - 1):
            first -= 1
        while last < index + size - 1 and self._encoded_at(tid, last + 1):
            last += 1
        start = max(first, min(index - size // 2, last - size + 1))
        return list(range(start, min(start + size, last + 1)))

    def _encoded_at(self, tid: int, index: int) -> bool:
        return index in self._held() and index < self.placed and tid in self._frame(index).logits

    # --- and the fusion input, averaged along each track ----------------------------------------------

    def _steady_features(self, frame: _Frame, number: int, encoded: Encoded) -> Encoded:
        """Chunk ``number``'s encoder features, each face's averaged over its track's window (the aligned
        crops hold the face still, so the mean keeps its shape and drops noise that changes every frame)."""
        faces = frame.faces[number * self.chunk : (number + 1) * self.chunk]
        windows = [self._track_window(face.track_id, frame.index, self.video.feature_window) for face in faces]
        if all(len(window) == 1 for window in windows):
            return encoded  # exactly a single image's features
        sizes = list(encoded.skips)
        averaged: dict[str | int, list[torch.Tensor]] = {key: [] for key in ["lq_feat", *sizes]}
        for face, window in zip(faces, windows, strict=True):
            features = [self._features(self._frame(i), face.track_id) for i in window]
            for key in averaged:
                averaged[key].append(torch.stack([feature[key] for feature in features]).mean(dim=0))
        skips = {size: torch.stack(averaged[size]) for size in sizes}
        return Encoded(lq_feat=torch.stack(averaged["lq_feat"]), skips=skips, logits=encoded.logits)

    def _features(self, frame: _Frame, tid: int) -> dict[str | int, torch.Tensor]:
        """One face's encoder output and skip features (by size) in ``frame``."""
        row = next(row for row, face in enumerate(frame.faces) if face.track_id == tid)
        encoded = frame.encoded[row // self.chunk]
        within = row % self.chunk
        return {"lq_feat": encoded.lq_feat[within], **{size: skip[within] for size, skip in encoded.skips.items()}}
