"""The dual-context network (paper III-C, Fig. 2, Eq. 1–4 and 8).

An emotion backbone reads the optical-flow image; a separate context backbone
(no weight sharing) reads the flow image or the RGB apex crop and is trained on
the context labels (ethnicity group by default). Heads:

- emotion head FC(f_emo) → Emote logits (Eq. 1, L_emo),
- context head FC(f_ctx) → context logits (Eq. 2, L_ethnic),
- fusion head FC(concat(f_emo, f_ctx)) → Emote logits (Eq. 3 and 8, L_fusion);
  ``fusion="mean"`` averages the features instead (the published TinyViT code),
  projecting f_ctx to f_emo's size first when the sizes differ.

Loss = w_emo·L_emo + w_ctx·L_ethnic + w_fus·L_fusion (Eq. 4, weights 1, 1, 1 by
default). The fusion head predicts. Without a context backbone the same class is
the motion-only baseline: one backbone, the emotion head predicts.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from ethnicmer.models.backbones import Backbone


class DualContextNet(nn.Module):
    """Emotion backbone + optional context backbone with late fusion.

    Args:
        emotion_backbone: reads the flow image ``(N, 3, H, W)``.
        context_backbone: reads the context input (flow or RGB apex), or ``None``
            for the motion-only baseline. Must be a different module object.
        n_emotions: number of emotion classes (3).
        n_context: number of context classes (2 for Asian / Non-Asian).
        fusion: ``"concat"`` (paper) or ``"mean"``.

    Raises:
        ValueError: both backbones are the same module or share a parameter.
    """

    def __init__(
        self,
        emotion_backbone: Backbone,
        context_backbone: Backbone | None = None,
        n_emotions: int = 3,
        n_context: int = 2,
        fusion: Literal["concat", "mean"] = "concat",
    ) -> None:
        super().__init__()
        self.emotion_backbone = emotion_backbone
        self.emotion_head = nn.Linear(emotion_backbone.feature_dim, n_emotions)
        self.context_backbone = context_backbone
        self.fusion = fusion
        if context_backbone is None:
            return
        shared = {id(p) for p in emotion_backbone.parameters()} & {
            id(p) for p in context_backbone.parameters()
        }
        if context_backbone is emotion_backbone or shared:
            raise ValueError(
                "the emotion and context backbones must not share weights (paper III-C)"
            )
        d_emo, d_ctx = emotion_backbone.feature_dim, context_backbone.feature_dim
        self.context_head = nn.Linear(d_ctx, n_context)
        if fusion == "concat":
            self.context_proj: nn.Module = nn.Identity()
            self.fusion_head = nn.Linear(d_emo + d_ctx, n_emotions)
        else:
            self.context_proj = nn.Identity() if d_ctx == d_emo else nn.Linear(d_ctx, d_emo)
            self.fusion_head = nn.Linear(d_emo, n_emotions)

    @property
    def has_context(self) -> bool:
        """Whether this is a dual model (True) or the motion-only baseline (False)."""
        return self.context_backbone is not None

    def forward(
        self, flow: torch.Tensor, context_input: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Logits of every head.

        Args:
            flow: ``(N, 3, H, W)`` float32 optical-flow images (u, v, strain).
            context_input: ``(N, 3, H', W')`` float32 input of the context backbone
                (required for dual models).

        Returns:
            ``{"emotion": (N, C)}`` and, for dual models, ``"context": (N, K)`` and
            ``"fusion": (N, C)``.
        """
        f_emo = self.emotion_backbone(flow)
        out = {"emotion": self.emotion_head(f_emo)}
        if self.context_backbone is None:
            return out
        if context_input is None:
            raise ValueError("a dual-context model needs its context input")
        f_ctx = self.context_backbone(context_input)
        out["context"] = self.context_head(f_ctx)
        if self.fusion == "concat":
            merged = torch.cat([f_emo, f_ctx], dim=1)
        else:
            merged = (f_emo + self.context_proj(f_ctx)) / 2
        out["fusion"] = self.fusion_head(merged)
        return out

    def loss(
        self,
        outputs: dict[str, torch.Tensor],
        emotion: torch.Tensor,
        context: torch.Tensor | None,
        weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> torch.Tensor:
        """Eq. 4: w_emo·CE(emotion) + w_ctx·CE(context) + w_fus·CE(fusion).

        Args:
            outputs: from :meth:`forward`.
            emotion: ``(N,)`` int64 emotion labels.
            context: ``(N,)`` int64 context labels (dual models).
            weights: (w_emo, w_ctx, w_fus).
        """
        loss = weights[0] * F.cross_entropy(outputs["emotion"], emotion)
        if "fusion" in outputs:
            assert context is not None
            loss = loss + weights[1] * F.cross_entropy(outputs["context"], context)
            loss = loss + weights[2] * F.cross_entropy(outputs["fusion"], emotion)
        return loss

    @staticmethod
    def prediction_logits(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The logits that predict the emotion: fusion head if present, else emotion head."""
        return outputs.get("fusion", outputs["emotion"])
