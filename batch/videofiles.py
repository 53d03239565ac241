"""Video files in and out through PyAV: frames streamed, fps and audio kept.

Frames are decoded one at a time, go through :func:`restore_video` (which holds only a few
frames ahead) and are encoded as they come out, so memory does not grow with the clip's
length. The video is re-encoded (H.264 in MP4 and MKV, VP9 in WebM) at the source's frame
rate; audio streams are copied as they are. The output is written to a temporary file
beside the destination and renamed into place when complete (``models.files``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..models.files import atomic_destination
from ..pipeline.inference import RestorationNetwork
from ..pipeline.options import RestoreOptions
from ..pipeline.video import VideoOptions, restore_video

# Output video codec per container; quality as the constant rate factor (lower is better).
CODECS = {".webm": "libvpx-vp9"}
DEFAULT_CODEC = "libx264"
CRF = "18"


@dataclass(frozen=True)
class VideoReport:
    """What a clip went through: frames in and out, faces restored, tracks seen."""

    frames: int
    faces: int
    tracks: int
    fps: float
    warning: str | None = None


def restore_video_file(
    source: Path, destination: Path, model: RestorationNetwork, options: RestoreOptions, video: VideoOptions,
    on_frame: Callable[[int], None] | None = None,
) -> VideoReport:  # fmt: skip
    """Restore the faces of ``source`` into ``destination`` (same container kind), keeping fps and audio."""
    import av

    try:
        container = av.open(str(source))
    except (av.error.FFmpegError, OSError) as error:
        raise ValueError(f"{source} could not be opened as a video ({error})") from error
    with container:
        if not container.streams.video:
            raise ValueError(f"{source} holds no video stream")
        stream = container.streams.video[0]
        fps = stream.average_rate or stream.guessed_rate or 25
        with atomic_destination(destination) as temporary:
            return _write(container, stream, fps, temporary, destination.suffix, model, options, video, on_frame)


def _write(container, stream, fps, path: Path, suffix: str, model, options, video, on_frame) -> VideoReport:  # noqa: ANN001 (PyAV objects)
    import av

    frames = faces = 0
    tracks: set[int] = set()
    width, height = stream.codec_context.width, stream.codec_context.height
    even = (width + width % 2, height + height % 2)  # 4:2:0 chroma needs even sides
    warning = None if even == (width, height) else (
        f"odd frame size {width}x{height}: padded to {even[0]}x{even[1]} (the encoder needs even sides), "
        "the last column or row repeated"
    )  # fmt: skip
    times: deque[float | None] = deque()
    with av.open(str(path), "w", format=_format(suffix)) as output:
        encoder = output.add_stream(CODECS.get(suffix.lower(), DEFAULT_CODEC), rate=fps)
        encoder.width, encoder.height = even
        encoder.pix_fmt = "yuv420p"
        encoder.options = {"crf": CRF}
        audio = {a.index: output.add_stream_from_template(a) for a in container.streams.audio}
        last_pts, start = -1, None
        for result in restore_video(_decoded(container, stream, times), model, options, video):
            pixels = (result.images[0][..., :3].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            pixels = np.pad(_rgb(pixels), ((0, even[1] - height), (0, even[0] - width), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            time = times.popleft()
            start = time if start is None else start
            frame.pts = last_pts = _pts(None if time is None else time - start, fps, frames, last_pts)
            for packet in encoder.encode(frame):
                output.mux(packet)
            frames += 1
            faces += len(result.faces)
            tracks |= {face.track_id for face in result.faces}
            if on_frame is not None:
                on_frame(frames)
        for packet in encoder.encode():
            output.mux(packet)
        if audio:
            container.seek(0)
            for packet in container.demux(*container.streams.audio):
                if packet.dts is None:
                    continue
                packet.stream = audio[packet.stream.index]
                output.mux(packet)
    return VideoReport(frames=frames, faces=faces, tracks=len(tracks), fps=float(fps), warning=warning)


def _decoded(container, stream, times: deque[float | None]) -> Iterator[np.ndarray]:  # noqa: ANN001 (PyAV objects)
    """The frames as RGB arrays; each one's time (seconds, None when unknown) is appended to ``times``."""
    for frame in container.decode(stream):
        times.append(frame.time)
        yield frame.to_ndarray(format="rgb24")


def _pts(time: float | None, fps: Fraction, index: int, last: int) -> int:
    """A frame's timestamp at the output's rate from its time after the first frame: where the input shows it
    (so a variable-rate clip keeps its timing and its audio stays in sync), after the previous one; its index
    when the input has no time."""
    if time is None:
        return max(index, last + 1)
    return max(round(time * fps), last + 1)


def _rgb(pixels: np.ndarray) -> np.ndarray:
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def _format(suffix: str) -> str | None:
    return {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".mp4": "mp4", ".avi": "avi"}.get(suffix.lower())
