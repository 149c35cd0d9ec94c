"""WMLM: modality encoders, a GPT-style causal backbone over time steps, and the stage-1 and stage-2 heads.

Only relative imports of this package appear here, so `save_pretrained` can export the file for `trust_remote_code`.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_wmlm import WMLMConfig

# Forward argument that carries each modality, in the HF naming style (`pixel_values` for images).
INPUT_NAMES = {"beam": "beam_power", "vision": "pixel_values", "gps": "gps_position"}

# PEFT `target_modules` (a regex is matched against whole module names) for LoRA on the backbone only: the causal
# transformer's attention and SwiGLU projections. The vision encoder's q/k/v/o projections are not matched.
BACKBONE_LORA_TARGET_MODULES = r"(wmlm\.)?layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)"


def check_tensor(name: str, value) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}; WMLMProcessor turns lists, numpy "
                        f"arrays and PIL frames into model inputs")


def check_reading_values(name: str, value: torch.Tensor, present: torch.Tensor) -> None:
    """Value checks on the readings marked present (placeholders of missing readings may hold anything).

    They read tensor values, so they step aside under torch.compile / torch.export, where shapes alone are checked.
    """
    if torch.compiler.is_compiling():
        return
    if name == "pixel_values" and not value.is_floating_point():
        raise ValueError(f"pixel_values has dtype {value.dtype}, but float frames scaled to [-1, 1] are expected; let "
                         f"WMLMProcessor resize and scale raw frames")
    readings = value[present]
    if readings.numel() == 0:
        return
    if not torch.isfinite(readings).all():
        raise ValueError(f"{name} has NaN or inf in readings marked present; mark missing readings False in "
                         f"modality_mask (their placeholder values are then never read)")
    if name == "beam_power" and (readings < 0).any():
        raise ValueError(f"beam_power has negative values (min {readings.min().item():.3g}); linear received power "
                         f"per beam is expected, not dB: pass 10 ** (dB / 10)")
    if name == "pixel_values" and readings.abs().amax() > 1 + 1e-3:
        raise ValueError(f"pixel_values span [{readings.min().item():.3g}, {readings.max().item():.3g}], but frames "
                         f"scaled to [-1, 1] are expected (0-255 or uint8 pixels are not); let WMLMProcessor resize "
                         f"and scale raw frames")


def check_labels(labels: torch.Tensor, config: WMLMConfig, shape: tuple, task: str) -> None:
    check_tensor("labels", labels)
    if tuple(labels.shape) != shape:
        raise ValueError(f"{task} labels must have shape {shape} (batch, config.horizon"
                         f"{', config.num_beams' if len(shape) == 3 else ''}), got {tuple(labels.shape)}; build the "
                         f"dataset's window shape from the model config (wmlm.data.window_kwargs)")
    if torch.compiler.is_compiling():
        return
    if task == "beam prediction" and labels.dim() == 3:
        if not torch.isfinite(labels).all() or (labels < 0).any():
            raise ValueError("beam prediction labels of shape (batch, horizon, num_beams) are the measured future "
                             "power vectors: finite, non-negative linear power")
    elif task == "beam prediction":
        kept = labels[labels != -100]
        if labels.is_floating_point() or ((kept < 0) | (kept >= config.num_beams)).any():
            raise ValueError(f"beam labels must be 0-based integer beam indices in [0, {config.num_beams}) or -100 "
                             f"to ignore, got dtype {labels.dtype} and values in [{kept.min().item()}, "
                             f"{kept.max().item()}]; DeepSense CSV labels are 1-based, subtract 1")
    elif not torch.isfinite(labels).all() or (labels < 0).any():
        raise ValueError("power forecast labels must be finite, non-negative linear power per beam")


# ----------------------------------------------------------------------------------------------------------------------
# Outputs


@dataclass
class WMLMModelOutput(ModelOutput):
    """
    last_hidden_state: (batch, T * num_modalities + horizon, hidden_size), history tokens then future-step queries.
    future_hidden_states: (batch, horizon, hidden_size), the query tokens the stage-2 heads read.
    modality_mask: (batch, T, num_modalities), True where a modality was present.
    hidden_states: per-layer states when `output_hidden_states=True`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    future_hidden_states: torch.FloatTensor | None = None
    modality_mask: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class WMLMContrastiveOutput(ModelOutput):
    """
    loss: summed symmetric InfoNCE over the aligned modality pairs.
    logits_per_pair: {"beam-vision": (n, n)} similarity logits, rows the first modality, over samples having both.
    embeddings: {"beam": (batch, projection_dim)} L2-normalised embeddings; rows of absent modalities are zero.
    modality_mask: (batch, num_modalities), True where a modality was present.
    logit_scale: the current inverse temperature.
    hidden_states: {"beam": (layer states, ...)} per encoder layer, when `output_hidden_states=True`.
    """

    loss: torch.FloatTensor | None = None
    logits_per_pair: dict[str, torch.FloatTensor] | None = None
    embeddings: dict[str, torch.FloatTensor] | None = None
    modality_mask: torch.BoolTensor | None = None
    logit_scale: torch.FloatTensor | None = None
    hidden_states: dict[str, tuple[torch.FloatTensor, ...]] | None = None


@dataclass
class WMLMBeamPredictionOutput(ModelOutput):
    """logits: (batch, horizon, num_beams) over the beam codebook for each future step."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class WMLMPowerForecastOutput(ModelOutput):
    """predicted_power: (batch, horizon, num_beams) in the units of the input `beam_power`."""

    loss: torch.FloatTensor | None = None
    predicted_power: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Losses


def contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): sample i of one modality must pick sample i of the other, both ways."""
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2


def gather_across_ranks(embeddings: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, M, P) embeddings and (B, M) masks of every rank, concatenated in rank order (open_clip's gather_features).

    The all-gather is differentiable: each rank's loss sees every rank's features as negatives, and gradients flow
    back to the rank that computed them, so after DDP's gradient averaging 2 ranks of B train exactly as 1 of 2B.
    """
    import torch.distributed as dist
    import torch.distributed.nn.functional as dist_nn

    sizes = [torch.zeros(1, dtype=torch.long, device=embeddings.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([embeddings.shape[0]], device=embeddings.device))
    if len({int(size) for size in sizes}) != 1:
        raise ValueError(f"ranks hold different batch sizes {[int(size) for size in sizes]}; gathered InfoNCE needs "
                         f"equal ones: set dataloader_drop_last=True")
    masks = [torch.zeros_like(present) for _ in sizes]
    dist.all_gather(masks, present.contiguous())
    return torch.cat(dist_nn.all_gather(embeddings.contiguous()), dim=0), torch.cat(masks, dim=0)


def is_distributed_training(module: nn.Module) -> bool:
    import torch.distributed as dist

    return module.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def neighbour_smoothed_targets(labels: torch.Tensor, num_beams: int, smoothing: float, window: int) -> torch.Tensor:
    """(N,) beam indices -> (N, num_beams) targets with `smoothing` spread over the +-`window` codebook neighbours.

    Adjacent beams of an oversampled codebook overlap, so a near miss is less wrong than a far one.
    """
    distance = (torch.arange(num_beams, device=labels.device)[None, :] - labels[:, None]).abs()
    neighbours = ((distance > 0) & (distance <= window)).float()
    share = smoothing / neighbours.sum(-1, keepdim=True).clamp_min(1)
    return torch.where(distance == 0, 1.0 - smoothing, neighbours * share)


def relative_power(power: torch.Tensor) -> torch.Tensor:
    """(…, num_beams) linear power -> power over the strongest beam's, in [0, 1]: the link budget drops out."""
    return power.clamp_min(0) / power.amax(-1, keepdim=True).clamp_min(1e-12)


def relative_power_db(power: torch.Tensor) -> torch.Tensor:
    """(…, num_beams) linear power -> dB relative to the strongest beam (<= 0)."""
    return 10 * torch.log10(relative_power(power).clamp_min(1e-12))


def log_minmax(power: torch.Tensor) -> torch.Tensor:
    """(…, num_beams) linear power -> dB relative to the strongest beam stretched over [0, 1] by the vector's own
    span: scale-free, so no statistic has to be fitted or can go stale on a new site."""
    decibels = relative_power_db(power)
    return 1 + decibels / decibels.amin(-1, keepdim=True).abs().clamp_min(1e-3)


def power_soft_targets(power: torch.Tensor, temperature_db: float) -> torch.Tensor:
    """(…, num_beams) measured linear power -> softmax over beams of (dB relative to the best beam) / temperature."""
    return (relative_power_db(power) / temperature_db).softmax(-1)


def beam_prediction_loss(logits: torch.Tensor, labels: torch.Tensor, config: WMLMConfig) -> torch.Tensor:
    """Cross-entropy over (batch, horizon) future steps. Labels are beam indices (-100 ignored) or the measured
    future power vectors (batch, horizon, num_beams), which give soft targets (`power_soft_targets`)."""
    if labels.is_floating_point():
        targets = power_soft_targets(labels.float(), config.beam_soft_label_temperature_db)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(0, 1))
    logits, labels = logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1)
    keep = labels != -100
    if config.beam_label_smoothing == 0 or config.beam_smoothing_window == 0:
        return F.cross_entropy(logits[keep], labels[keep])
    targets = neighbour_smoothed_targets(labels[keep], config.num_beams, config.beam_label_smoothing,
                                         config.beam_smoothing_window)
    return F.cross_entropy(logits[keep], targets)


def power_nmse(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over vectors of ||p_hat - p||^2 / ||p||^2, the usual NMSE of beam power forecasting."""
    error = (predicted - target).pow(2).sum(-1)
    return (error / target.pow(2).sum(-1).clamp_min(1e-12)).mean()


# ----------------------------------------------------------------------------------------------------------------------
# Shared blocks


class WMLMRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Reference attention, (batch, heads, L, head_dim) in, (batch, L, heads, head_dim) out, as transformers' SDPA."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if module.is_causal:
        q_len, k_len = query.shape[2], key.shape[2]
        causal = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril()
        attn_weights = attn_weights.masked_fill(~causal, torch.finfo(attn_weights.dtype).min)
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class WMLMAttention(nn.Module):
    """Multi-head attention with PEFT-targetable q/k/v/o projections; causal in the backbone, full in the ViT."""

    def __init__(self, config: WMLMConfig, hidden_size: int, num_heads: int, is_causal: bool, bias: bool):
        super().__init__()
        self.config = config
        self.is_causal = is_causal
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (batch, L, hidden) output and, on the eager path only, the (batch, heads, L, L) attention weights."""
        batch, length, _ = hidden_states.shape
        shape = (batch, length, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)  # (B, H, L, d)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self, query, key, value, attention_mask=None, is_causal=self.is_causal, scaling=self.scaling,
            dropout=self.config.attention_dropout if self.training else 0.0,
        )
        return self.o_proj(attn_output.reshape(batch, length, -1)), attn_weights  # (B, L, D)


# ----------------------------------------------------------------------------------------------------------------------
# Modality encoders: each maps one sample of its sensor, (N, *input_shape), to (N, encoder hidden size).


class WMLMMLPEncoder(nn.Module):
    """Residual MLP over a feature vector, shared by the beam and GPS encoders."""

    def __init__(self, in_features: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.fc_in = nn.Linear(in_features, hidden_size)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, hidden_size), nn.GELU())
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, features) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """-> (N, hidden) output and the state after the input layer and after each block."""
        x = self.fc_in(features)
        states = (x,)
        for block in self.blocks:
            x = x + block(x)
            states += (x,)
        return self.norm(x), states


class WMLMBeamEncoder(nn.Module):
    """Beam power vector (N, num_beams), linear power as measured."""

    input_shape_rank = 1

    def __init__(self, config: WMLMConfig):
        super().__init__()
        settings = config.encoder_configs["beam"]
        self.num_beams = config.num_beams
        self.power_transform = settings["power_transform"]
        self.log_floor_db = settings["log_floor_db"]
        self.power_mean_db, self.power_std_db = settings["power_mean_db"], settings["power_std_db"]
        self.hidden_size = settings["hidden_size"]
        self.mlp = WMLMMLPEncoder(config.num_beams, self.hidden_size, settings["num_layers"])

    def check_input(self, power: torch.Tensor):
        if power.shape[-1] != self.num_beams:
            raise ValueError(f"beam_power has {power.shape[-1]} beams on its last dimension, but config.num_beams is "
                             f"{self.num_beams}: the input must be one power value per codebook beam")

    def normalise(self, power: torch.Tensor) -> torch.Tensor:
        """Power relative to the strongest beam: the pattern across beams matters, the link budget does not.

        Real 60 GHz codebooks span only 3-12 dB from best to worst beam, so a fixed -40 dB floor ("log") squeezes them
        into [0.75, 1]; "log_minmax" stretches each vector over [0, 1] by its own span, "log_standardize" uses the
        training split's statistics.
        """
        if self.power_transform == "normalize":
            return relative_power(power)
        if self.power_transform == "log_minmax":
            return log_minmax(power)
        decibels = relative_power_db(power)
        if self.power_transform == "log_standardize":
            if self.power_std_db is None:
                raise ValueError("beam power_transform='log_standardize' needs power_mean_db and power_std_db: fit "
                                 "them with WMLMProcessor.fit_normalization(config, beam_power=training_power)")
            return (decibels - self.power_mean_db) / self.power_std_db
        return 1 + decibels.clamp_min(self.log_floor_db) / -self.log_floor_db  # in [0, 1]

    def forward(self, power):
        return self.mlp(self.normalise(power.float()).to(self.mlp.fc_in.weight.dtype))


class WMLMGPSEncoder(nn.Module):
    """Vehicle position (N, 2): east and north in metres from the base station (a local ENU frame)."""

    input_shape_rank = 1

    def __init__(self, config: WMLMConfig):
        super().__init__()
        settings = config.encoder_configs["gps"]
        self.position_center_m = tuple(settings["position_center_m"])
        self.position_scale_m = settings["position_scale_m"]
        self.hidden_size = settings["hidden_size"]
        self.num_frequencies = settings["num_frequencies"]
        self.mlp = WMLMMLPEncoder(2 + 4 * settings["num_frequencies"], self.hidden_size, settings["num_layers"])

    def check_input(self, position: torch.Tensor):
        if position.shape[-1] != 2:
            raise ValueError(f"gps_position must end in 2 values (east, north metres), got shape "
                             f"{tuple(position.shape)}")

    def forward(self, position):
        # Fourier features let a small MLP resolve metre-scale detail over a site hundreds of metres wide.
        center = position.new_tensor(self.position_center_m, dtype=torch.float)
        x = (position.float() - center) / self.position_scale_m  # (N, 2)
        frequencies = math.pi * 2.0 ** torch.arange(self.num_frequencies, device=x.device)
        angles = (x[..., None] * frequencies).flatten(-2)  # (N, 2 * F)
        features = torch.cat([x, angles.sin(), angles.cos()], dim=-1)
        return self.mlp(features.to(self.mlp.fc_in.weight.dtype))


class WMLMVisionEmbeddings(nn.Module):
    def __init__(self, config: WMLMConfig):
        super().__init__()
        settings = config.encoder_configs["vision"]
        hidden = settings["hidden_size"]
        self.patch_embedding = nn.Conv2d(settings["num_channels"], hidden, settings["patch_size"],
                                         stride=settings["patch_size"])
        num_patches = (settings["image_size"] // settings["patch_size"]) ** 2
        self.class_embedding = nn.Parameter(torch.zeros(hidden))
        self.position_embedding = nn.Parameter(torch.zeros(1, num_patches + 1, hidden))

    def forward(self, pixel_values):
        patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)  # (N, num_patches, D)
        cls = self.class_embedding.expand(patches.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding


class WMLMVisionMLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class WMLMVisionLayer(GradientCheckpointingLayer):
    """Pre-norm ViT block."""

    def __init__(self, config: WMLMConfig):
        super().__init__()
        settings = config.encoder_configs["vision"]
        hidden = settings["hidden_size"]
        self.layer_norm1 = nn.LayerNorm(hidden)
        self.self_attn = WMLMAttention(config, hidden, settings["num_heads"], is_causal=False, bias=True)
        self.layer_norm2 = nn.LayerNorm(hidden)
        self.mlp = WMLMVisionMLP(hidden, settings["intermediate_size"])

    def forward(self, hidden_states):
        hidden_states = hidden_states + self.self_attn(self.layer_norm1(hidden_states))[0]
        return hidden_states + self.mlp(self.layer_norm2(hidden_states))


class WMLMVisionEncoder(nn.Module):
    """ViT over a camera frame (N, C, H, W) with pixel values scaled to [-1, 1]; returns the CLS state."""

    input_shape_rank = 3

    def __init__(self, config: WMLMConfig):
        super().__init__()
        settings = config.encoder_configs["vision"]
        self.image_size = settings["image_size"]
        self.num_channels = settings["num_channels"]
        self.hidden_size = settings["hidden_size"]
        self.embeddings = WMLMVisionEmbeddings(config)
        self.layers = nn.ModuleList(WMLMVisionLayer(config) for _ in range(settings["num_layers"]))
        self.post_layernorm = nn.LayerNorm(self.hidden_size)

    def check_input(self, pixel_values: torch.Tensor):
        expected = (self.num_channels, self.image_size, self.image_size)
        if tuple(pixel_values.shape[-3:]) != expected:
            raise ValueError(f"pixel_values must end in {expected} (channels, height, width) for this config, got "
                             f"shape {tuple(pixel_values.shape)}; resize frames to encoder_configs['vision']"
                             f"['image_size']")

    def forward(self, pixel_values) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """-> (N, hidden) CLS output and the (N, 1 + patches, hidden) states after the embeddings and each layer."""
        hidden_states = self.embeddings(pixel_values.to(self.embeddings.patch_embedding.weight.dtype))
        states = (hidden_states,)
        for layer in self.layers:
            hidden_states = layer(hidden_states)
            states += (hidden_states,)
        return self.post_layernorm(hidden_states[:, 0]), states


ENCODER_CLASSES = {"beam": WMLMBeamEncoder, "vision": WMLMVisionEncoder, "gps": WMLMGPSEncoder}


class WMLMModalityEncoders(nn.Module):
    """ImageBind-style modality-keyed encoders, each with a linear projection into the shared embedding space."""

    def __init__(self, config: WMLMConfig):
        super().__init__()
        self.config = config
        self.encoders = nn.ModuleDict({m: ENCODER_CLASSES[m](config) for m in config.modalities})
        self.projections = nn.ModuleDict(
            {m: nn.Linear(self.encoders[m].hidden_size, config.projection_dim, bias=False) for m in config.modalities}
        )

    def gather_inputs(self, batch_rank: int, modality_mask: torch.Tensor | None, **inputs):
        """Check the given modalities and build the presence mask (*batch, num_modalities).

        A modality not given is absent for every sample; `modality_mask` marks absences per sample on top of that.
        """
        given = {}
        for modality, name in INPUT_NAMES.items():
            value = inputs.get(name)
            if value is None:
                continue
            check_tensor(name, value)
            if modality not in self.encoders:
                raise ValueError(f"{name} was given, but {modality!r} is not in config.modalities "
                                 f"{self.config.modalities}")
            encoder = self.encoders[modality]
            encoder.check_input(value)
            if value.dim() != batch_rank + encoder.input_shape_rank:
                raise ValueError(f"{name} must have {batch_rank} batch dimension(s) before its per-sample shape, got "
                                 f"shape {tuple(value.shape)}")
            given[modality] = value
        if not given:
            raise ValueError(f"no modality given: pass at least one of {[INPUT_NAMES[m] for m in self.encoders]}")
        batch_shape = next(iter(given.values())).shape[:batch_rank]
        if any(v.shape[:batch_rank] != batch_shape for v in given.values()):
            raise ValueError(f"modalities disagree on the batch shape: "
                             f"{ {INPUT_NAMES[m]: tuple(v.shape) for m, v in given.items()} }")
        device = next(iter(given.values())).device
        present = torch.zeros(*batch_shape, len(self.config.modalities), dtype=torch.bool, device=device)
        for modality in given:
            present[..., self.config.modality_index[modality]] = True
        if modality_mask is not None:
            check_tensor("modality_mask", modality_mask)
            if modality_mask.shape != present.shape:
                raise ValueError(f"modality_mask must have shape {tuple(present.shape)} (batch dims, one column per "
                                 f"modality in {self.config.modalities}), got {tuple(modality_mask.shape)}")
            present &= modality_mask.to(device=device, dtype=torch.bool)
        for modality, value in given.items():
            check_reading_values(INPUT_NAMES[modality], value, present[..., self.config.modality_index[modality]])
        return given, present

    def forward(self, given: dict[str, torch.Tensor], present: torch.Tensor, output_hidden_states: bool = False):
        """-> (*batch, num_modalities, projection_dim), absent entries zero, and per-modality encoder layer states.

        Every row is encoded, so shapes never depend on the data (torch.export); a missing reading is replaced by
        zeros before its encoder and its output by zeros after, so placeholder values (NaN too) never reach the
        outputs or the gradients.
        """
        dtype = self.projections[self.config.modalities[0]].weight.dtype
        batch_shape = present.shape[:-1]
        columns, hidden_states = [], {}
        for modality, rows in zip(self.config.modalities, present.unbind(-1), strict=True):
            if modality not in given:
                columns.append(present.new_zeros(*batch_shape, self.config.projection_dim, dtype=dtype))
                continue
            value = given[modality].flatten(0, len(batch_shape) - 1)  # (N, *sample shape)
            keep = rows.reshape(-1, *([1] * (value.dim() - 1)))
            encoded, states = self.encoders[modality](torch.where(keep, value, torch.zeros_like(value)))
            projected = self.projections[modality](encoded)  # (N, projection_dim)
            columns.append(torch.where(rows.reshape(-1, 1), projected, 0).unflatten(0, batch_shape))
            if output_hidden_states:
                hidden_states[modality] = tuple(state.unflatten(0, batch_shape) for state in states)
        return torch.stack(columns, dim=-2), hidden_states


# ----------------------------------------------------------------------------------------------------------------------
# Backbone


class WMLMMLP(nn.Module):
    """SwiGLU feed-forward, with llama's projection names so PEFT recipes carry over."""

    def __init__(self, config: WMLMConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class WMLMDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: WMLMConfig):
        super().__init__()
        self.input_layernorm = WMLMRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = WMLMAttention(config, config.hidden_size, config.num_attention_heads, is_causal=True,
                                       bias=False)
        self.post_attention_layernorm = WMLMRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = WMLMMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, hidden_states):
        attn_output, attn_weights = self.self_attn(self.input_layernorm(hidden_states))
        hidden_states = hidden_states + self.dropout(attn_output)
        return hidden_states + self.dropout(self.mlp(self.post_attention_layernorm(hidden_states))), attn_weights


class WMLMPreTrainedModel(PreTrainedModel):
    config_class = WMLMConfig
    config: WMLMConfig
    base_model_prefix = "wmlm"
    main_input_name = "beam_power"
    supports_gradient_checkpointing = True
    _no_split_modules = ["WMLMDecoderLayer", "WMLMVisionLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, WMLMVisionEmbeddings):
            init.normal_(module.class_embedding, std=std)
            init.normal_(module.position_embedding, std=std)
        elif isinstance(module, WMLMForContrastiveAlignment):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)

    def load_alignment_encoders(self, alignment: "str | WMLMForContrastiveAlignment", **from_pretrained_kwargs):
        """Copy the stage-1 encoders and projections (a checkpoint path or a model) into this model. This model may
        use a subset of the aligned modalities (aligned with a camera, deployed where there is none)."""
        if not isinstance(alignment, WMLMForContrastiveAlignment):
            alignment = WMLMForContrastiveAlignment.from_pretrained(alignment, **from_pretrained_kwargs)
        mine, theirs = self.base_model.encoders, alignment.encoders
        missing = [m for m in self.config.modalities if m not in alignment.config.modalities]
        if missing:
            raise ValueError(f"stage-1 checkpoint aligned {alignment.config.modalities}, not {missing}; build the "
                             f"stage-2 config from the stage-1 one (WMLMConfig.modalities_subset)")
        ours = {m: alignment.config.encoder_configs[m] for m in self.config.modalities}
        for name, theirs_value in (("encoder_configs", ours), ("projection_dim", alignment.config.projection_dim),
                                   ("num_beams", alignment.config.num_beams)):
            if getattr(self.config, name) != theirs_value:
                raise ValueError(f"stage-1 checkpoint has {name}={theirs_value!r} but this model has "
                                 f"{getattr(self.config, name)!r}; build the stage-2 config from the stage-1 one")
        for part in ("encoders", "projections"):
            for modality in self.config.modalities:
                getattr(mine, part)[modality].load_state_dict(getattr(theirs, part)[modality].state_dict())
        return self


class WMLMModel(WMLMPreTrainedModel):
    """Encoders plus a causal transformer over tokens ordered (t=0: modality 0..M-1), ..., (t=T-1: ...), then one query
    token per future step. Each token knows its modality and time step; an absent modality gets a learned embedding,
    so one model serves sites with and without a camera."""

    def __init__(self, config: WMLMConfig):
        super().__init__(config)
        num_modalities = len(config.modalities)
        self.encoders = WMLMModalityEncoders(config)
        self.token_proj = nn.Linear(config.projection_dim, config.hidden_size)
        self.modality_embeddings = nn.Embedding(num_modalities, config.hidden_size)
        self.absent_embeddings = nn.Embedding(num_modalities, config.hidden_size)
        self.time_embeddings = nn.Embedding(config.history_len + config.horizon, config.hidden_size)
        self.query_embeddings = nn.Embedding(config.horizon, config.hidden_size)
        self.layers = nn.ModuleList(WMLMDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = WMLMRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def embed_history(self, given, present):
        """-> (batch, T * num_modalities, hidden) history tokens."""
        steps = present.shape[1]
        if steps > self.config.history_len:
            raise ValueError(f"inputs have {steps} time steps but config.history_len is {self.config.history_len}")
        tokens = self.token_proj(self.encoders(given, present)[0])  # (B, T, M, D)
        tokens = torch.where(present[..., None], tokens, self.absent_embeddings.weight.to(tokens.dtype))
        tokens = tokens + self.modality_embeddings.weight + self.time_embeddings.weight[:steps, None]
        return tokens.flatten(1, 2)

    @can_return_tuple
    def forward(
        self,
        beam_power: torch.Tensor | None = None,  # (B, T, num_beams) linear power
        pixel_values: torch.Tensor | None = None,  # (B, T, C, H, W) scaled to [-1, 1]
        gps_position: torch.Tensor | None = None,  # (B, T, 2) east/north metres from the base station
        modality_mask: torch.Tensor | None = None,  # (B, T, num_modalities), False marks a missing reading
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> WMLMModelOutput:
        output_attentions = resolve_output_attentions(self.config, output_attentions)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        given, present = self.encoders.gather_inputs(
            2, modality_mask, beam_power=beam_power, pixel_values=pixel_values, gps_position=gps_position
        )
        history = self.embed_history(given, present)
        steps, horizon = present.shape[1], self.config.horizon
        queries = self.query_embeddings.weight + self.time_embeddings.weight[steps : steps + horizon]  # (H, D)
        hidden_states = torch.cat([history, queries.to(history.dtype).expand(history.shape[0], -1, -1)], dim=1)
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden_states, attn_weights = layer(hidden_states)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (attn_weights,)
        hidden_states = self.norm(hidden_states)
        return WMLMModelOutput(
            last_hidden_state=hidden_states,
            future_hidden_states=hidden_states[:, -horizon:],
            modality_mask=present,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
        )


def resolve_output_attentions(config: WMLMConfig, output_attentions: bool | None) -> bool:
    """Attention weights exist only on the eager path (fused kernels never form them), so say so, never drop them."""
    if output_attentions is None:
        output_attentions = config.output_attentions
    if output_attentions and config._attn_implementation != "eager":
        raise ValueError(f"output_attentions=True needs the eager attention path, but attn_implementation is "
                         f"{config._attn_implementation!r}; load with from_pretrained(..., attn_implementation="
                         f"'eager') or call model.set_attn_implementation('eager')")
    return output_attentions


# ----------------------------------------------------------------------------------------------------------------------
# Stage 1: cross-modal alignment


class WMLMForContrastiveAlignment(WMLMPreTrainedModel):
    """Encoders only: each non-anchor modality is pulled towards the anchor with a symmetric InfoNCE loss."""

    def __init__(self, config: WMLMConfig):
        super().__init__(config)
        self.encoders = WMLMModalityEncoders(config)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        self.post_init()

    def alignment_pairs(self, given) -> list[tuple[str, str]]:
        modalities = [m for m in self.config.modalities if m in given]
        anchor = self.config.anchor_modality
        if anchor == "joint":
            return [(a, b) for i, a in enumerate(modalities) for b in modalities[i + 1 :]]
        return [(anchor, m) for m in modalities if m != anchor] if anchor in given else []

    def pair_logits(self, embeddings, present, logit_scale, pairs) -> dict[str, torch.Tensor]:
        """{"a-b": (n, n)} similarity logits over the n >= 1 samples that have both modalities. With n = 1 there is
        no negative and the pair's InfoNCE is zero."""
        logits_per_pair = {}
        for a, b in pairs:
            ia, ib = self.config.modality_index[a], self.config.modality_index[b]
            rows = present[:, ia] & present[:, ib]
            if rows.any():
                logits_per_pair[f"{a}-{b}"] = logit_scale * embeddings[rows, ia] @ embeddings[rows, ib].t()
        return logits_per_pair

    @can_return_tuple
    def forward(
        self,
        beam_power: torch.Tensor | None = None,  # (B, num_beams) linear power
        pixel_values: torch.Tensor | None = None,  # (B, C, H, W) scaled to [-1, 1]
        gps_position: torch.Tensor | None = None,  # (B, 2) east/north metres from the base station
        modality_mask: torch.Tensor | None = None,  # (B, num_modalities)
        return_loss: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> WMLMContrastiveOutput:
        """As `CLIPModel`, the loss is computed only with `return_loss=True`: inference on one sample is fine."""
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        given, present = self.encoders.gather_inputs(
            1, modality_mask, beam_power=beam_power, pixel_values=pixel_values, gps_position=gps_position
        )
        encoded, hidden_states = self.encoders(given, present, output_hidden_states)
        embeddings = F.normalize(encoded, dim=-1)  # (B, M, P)
        logit_scale = self.logit_scale.exp().clamp(max=100)  # CLIP's cap keeps the temperature from collapsing
        pairs = self.alignment_pairs(given)
        logits_per_pair = self.pair_logits(embeddings, present, logit_scale, pairs)
        loss = None
        if return_loss:
            if is_distributed_training(self):  # negatives from the global batch, as open_clip
                logits_for_loss = self.pair_logits(*gather_across_ranks(embeddings, present), logit_scale, pairs)
            else:
                logits_for_loss = logits_per_pair
            if not logits_for_loss:
                raise ValueError(f"no sample has both modalities of an aligned pair; anchor is "
                                 f"{self.config.anchor_modality!r} and the batch has {sorted(given)}")
            loss = torch.stack([contrastive_loss(logits.float()) for logits in logits_for_loss.values()]).sum()
        return WMLMContrastiveOutput(
            loss=loss,
            logits_per_pair=logits_per_pair,
            embeddings={m: embeddings[:, self.config.modality_index[m]] for m in given},
            modality_mask=present,
            logit_scale=logit_scale,
            hidden_states=hidden_states if output_hidden_states else None,
        )


# ----------------------------------------------------------------------------------------------------------------------
# Stage 2: task heads on the backbone's future-step tokens


class WMLMForBeamPrediction(WMLMPreTrainedModel):
    """Best beam for each of the next `horizon` steps, as logits over the codebook."""

    def __init__(self, config: WMLMConfig):
        super().__init__(config)
        self.wmlm = WMLMModel(config)
        self.beam_head = nn.Linear(config.hidden_size, config.num_beams)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        beam_power: torch.Tensor | None = None,  # (B, T, num_beams) linear power
        pixel_values: torch.Tensor | None = None,  # (B, T, C, H, W) scaled to [-1, 1]
        gps_position: torch.Tensor | None = None,  # (B, T, 2) east/north metres from the base station
        modality_mask: torch.Tensor | None = None,  # (B, T, num_modalities), False marks a missing reading
        labels: torch.Tensor | None = None,  # (B, horizon) 0-based beams (-100 ignored), or (B, horizon, num_beams)
        # measured future power for soft targets
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> WMLMBeamPredictionOutput:
        outputs = self.wmlm(beam_power=beam_power, pixel_values=pixel_values, gps_position=gps_position,
                            modality_mask=modality_mask, output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.beam_head(outputs.future_hidden_states)  # (B, H, num_beams)
        loss = None
        if labels is not None:
            shape = (logits.shape[0], self.config.horizon) + ((self.config.num_beams,) if labels.dim() == 3 else ())
            check_labels(labels, self.config, shape, "beam prediction")
            loss = beam_prediction_loss(logits, labels, self.config)
        return WMLMBeamPredictionOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)


class WMLMForPowerForecast(WMLMPreTrainedModel):
    """Power vectors of the next `horizon` steps, trained with NMSE."""

    def __init__(self, config: WMLMConfig):
        super().__init__(config)
        self.wmlm = WMLMModel(config)
        self.power_head = nn.Linear(config.hidden_size, config.num_beams)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        beam_power: torch.Tensor | None = None,  # (B, T, num_beams) linear power
        pixel_values: torch.Tensor | None = None,  # (B, T, C, H, W) scaled to [-1, 1]
        gps_position: torch.Tensor | None = None,  # (B, T, 2) east/north metres from the base station
        modality_mask: torch.Tensor | None = None,  # (B, T, num_modalities), False marks a missing reading
        labels: torch.Tensor | None = None,  # (B, horizon, num_beams) future linear power
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> WMLMPowerForecastOutput:
        """The head predicts power relative to the strongest beam seen in the history, so one model spans sites whose
        received power differs by orders of magnitude; outputs are scaled back to input units."""
        outputs = self.wmlm(beam_power=beam_power, pixel_values=pixel_values, gps_position=gps_position,
                            modality_mask=modality_mask, output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states, return_dict=True)
        scale = 1.0 if beam_power is None else beam_power.float().amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        relative = F.softplus(self.power_head(outputs.future_hidden_states).float())  # (B, H, num_beams)
        loss = None
        if labels is not None:
            check_labels(labels, self.config, (relative.shape[0], self.config.horizon, self.config.num_beams),
                         "power forecast")
            loss = power_nmse(relative, labels.float() / scale)
        return WMLMPowerForecastOutput(loss=loss, predicted_power=relative * scale,
                                       hidden_states=outputs.hidden_states, attentions=outputs.attentions)


__all__ = [
    "BACKBONE_LORA_TARGET_MODULES",
    "WMLMPreTrainedModel",
    "WMLMModel",
    "WMLMForContrastiveAlignment",
    "WMLMForBeamPrediction",
    "WMLMForPowerForecast",
]
