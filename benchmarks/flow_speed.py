"""Flow images per second: frames → aligned optical-flow image (ours) vs bare TV-L1.

Pairs are micro-expression-like: a real face photo (``videos/single_face.jpg``) on
a 640×480 frame (CASME II's size) as onset, and the same frame warped by a smooth
lip-corner pull of 0.5–2 px (plus a sub-pixel head shift) as apex. Ours runs
detection (onset), landmarks, alignment of both frames, TV-L1, optical strain and
the 28 px flow image; the bare call runs ``cv2.optflow.DualTVL1OpticalFlow`` on the
same aligned 224 px crops. Issue target: our overhead over the bare call ≤ 10 %.
"""

from __future__ import annotations

import cv2
import numpy as np
from common import median_seconds, real_data, write

from ethnicmer.flow.align import alignment_transform, detect_landmarks
from ethnicmer.flow.compute import FlowSettings, flow_from_frames

PAIRS = 8
ROUNDS = 5


def make_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    photo = cv2.imread(str(real_data() / "videos" / "single_face.jpg"), cv2.IMREAD_GRAYSCALE)
    face = cv2.resize(photo, (int(photo.shape[1] * 480 / photo.shape[0]), 480))
    onset = np.zeros((480, 640), np.uint8) + 128
    x0 = (640 - face.shape[1]) // 2
    onset[:, x0 : x0 + face.shape[1]] = face
    landmarks = detect_landmarks(onset, "onset")
    yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
    rng = np.random.default_rng(0)
    pairs = []
    for k in range(PAIRS):
        amplitude = 0.5 + 1.5 * k / (PAIRS - 1)
        du = np.zeros_like(xx)
        dv = np.zeros_like(xx)
        for corner, sign in ((landmarks[48], -1), (landmarks[54], 1)):
            bump = np.exp(-((xx - corner[0]) ** 2 + (yy - corner[1]) ** 2) / (2 * 20.0**2))
            du += sign * amplitude * bump
            dv -= 0.8 * amplitude * bump
        shift = rng.uniform(-0.5, 0.5, 2).astype(np.float32)
        apex = cv2.remap(
            onset,
            xx - du - shift[0],
            yy - dv - shift[1],
            cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REFLECT,
        )
        pairs.append((onset, apex))
    return pairs


def main() -> None:
    cv2.setNumThreads(1)
    pairs = make_pairs()
    settings = FlowSettings(align="dlib", crop_size=224, size=28)
    crops = []
    for onset, apex in pairs:
        transform = alignment_transform(detect_landmarks(onset, "onset"), 224, settings.margin)
        crops.append((transform.apply(onset), transform.apply(apex)))

    def ours() -> None:
        for onset, apex in pairs:
            flow_from_frames(onset, apex, settings, "pair")

    def bare() -> None:
        for onset, apex in crops:
            cv2.optflow.DualTVL1OpticalFlow_create().calc(onset, apex, None)

    ours()  # warm-up: loads the dlib models
    rounds_ours, rounds_bare = [], []
    for _ in range(ROUNDS):  # interleaved so that machine noise hits both alike
        rounds_ours.append(median_seconds(ours, 1)[0])
        rounds_bare.append(median_seconds(bare, 1)[0])
    t_ours, t_bare = float(np.median(rounds_ours)), float(np.median(rounds_bare))
    write(
        "flow_speed",
        {
            "pairs_per_round": PAIRS,
            "rounds": ROUNDS,
            "frame_size": [480, 640],
            "crop_size": 224,
            "ours_images_per_second": PAIRS / t_ours,
            "bare_tvl1_images_per_second": PAIRS / t_bare,
            "overhead_over_bare": t_ours / t_bare - 1,
            "target_overhead": 0.10,
            "round_seconds_ours": rounds_ours,
            "round_seconds_bare": rounds_bare,
        },
    )


if __name__ == "__main__":
    main()
