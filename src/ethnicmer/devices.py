"""Where tensors live and at what precision: CPU, CUDA GPUs or Apple MPS.

``device: auto`` takes the first of CUDA, MPS and the CPU that the machine has;
``cpu``, ``cuda``, ``cuda:N`` and ``mps`` ask for one (an unavailable one is an
error, never a silent fallback). ``precision: "32"`` (a string: quote it in YAML)
trains in float32 everywhere; ``bf16-mixed`` and ``16-mixed`` run the forward pass
under ``torch.autocast`` (``16-mixed`` with a ``GradScaler`` on CUDA) and need an
accelerator. On CUDA the cuDNN
determinism flags are set (``cudnn.deterministic``, no autotuning,
``torch.use_deterministic_algorithms`` with ``CUBLAS_WORKSPACE_CONFIG``) as a best
effort: some CUDA kernels have no deterministic version (the backward pass of
adaptive average pooling, which every backbone here uses), and torch then only warns,
so GPU folds may differ slightly between runs. GPU numbers also differ from the CPU's
(other kernels, other summation order), which is why the resolved device and
precision are part of every fold's spec.
"""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ethnicmer.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"
PRECISIONS = ("32", "bf16-mixed", "16-mixed")


@dataclass(frozen=True)
class Compute:
    """A resolved device and precision.

    Attributes:
        device: ``cpu``, ``cuda:0``, ``mps``.
        precision: ``32``, ``bf16-mixed`` or ``16-mixed``.
    """

    device: str
    precision: str = "32"

    @property
    def kind(self) -> str:
        """``cpu``, ``cuda`` or ``mps``."""
        return self.device.split(":")[0]

    @property
    def accelerator(self) -> bool:
        return self.kind != "cpu"

    def spec(self) -> dict[str, object]:
        """What a fold's numbers depend on: device type and name, precision, determinism."""
        out: dict[str, object] = {"device": self.kind, "precision": self.precision}
        if self.kind == "cuda":
            import torch

            out["gpu"] = torch.cuda.get_device_name(torch.device(self.device))
            out["deterministic"] = "best effort"
        return out

    def autocast(self) -> AbstractContextManager[object]:
        """The forward pass's autocast context (a no-op at precision 32)."""
        if self.precision == "32":
            return nullcontext()
        import torch

        dtype = torch.bfloat16 if self.precision == "bf16-mixed" else torch.float16
        return torch.autocast(device_type=self.kind, dtype=dtype)

    def scaler(self) -> torch.amp.GradScaler | None:
        """A gradient scaler for ``16-mixed`` on CUDA (float16 gradients underflow), else None."""
        if self.precision != "16-mixed" or self.kind != "cuda":
            return None
        import torch

        return torch.amp.GradScaler("cuda")


def resolve_compute(device: str = "auto", precision: str = "32") -> Compute:
    """Resolve ``device`` (``auto`` → CUDA, else MPS, else CPU) and check ``precision``.

    Raises:
        ConfigError: an unknown device name or precision, an unavailable device (names
            what the machine has), or mixed precision on the CPU.
    """
    import torch

    if not re.fullmatch(DEVICE_PATTERN, device):
        raise ConfigError(f"device {device!r}: expected auto, cpu, cuda, cuda:N or mps")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: expected one of {list(PRECISIONS)}")
    has_cuda = torch.cuda.is_available()
    has_mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if device == "auto":
        device = "cuda:0" if has_cuda else "mps" if has_mps else "cpu"
    elif device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        count = torch.cuda.device_count() if has_cuda else 0
        if index >= count:
            raise ConfigError(
                f"device {device}: this machine has {count} CUDA device(s)"
                + ("" if has_cuda else " (torch.cuda.is_available() is False)")
                + "; use device: auto or cpu"
            )
        device = f"cuda:{index}"
    elif device == "mps" and not has_mps:
        raise ConfigError("device mps: this machine has no Apple MPS device; use auto or cpu")
    compute = Compute(device, precision)
    if precision != "32" and not compute.accelerator:
        raise ConfigError(
            f"precision {precision} needs a GPU (the device resolved to {device}); use "
            "precision: 32 on the CPU"
        )
    return compute


def make_deterministic(compute: Compute) -> None:
    """Set the determinism flags of ``compute``'s device (CUDA: cuDNN, cuBLAS)."""
    if compute.kind != "cuda":
        return
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
