"""The coarse LoFTR network in PyTorch, as docs/model.md describes it.

Data flow for one image pair (both images share the backbone, concatenated on the batch axis):

    image [N,1,H,W] -> ResNet backbone -> coarse map [N,C,H/s,W/s]
                                          (+ optional fine map [N,Cf,H/f,W/f])
    coarse map + 2D sine PE -> flatten [N,L,C] -> linear-attention self/cross layers
    -> dual-softmax -> conf_matrix [N,L,S]

The same network in two stages (:meth:`CoarseLoFTR.encode`, :meth:`CoarseLoFTR.match_encoded`),
so that a fixed reference image is encoded once:

- encoder, per image: backbone, PE, the self layers before the first cross layer, fine features;
- matcher, per pair: the rest of the transformer and the dual softmax.

Both stages use the modules (and state_dict keys) of the single-pass network.

No einsum, no einops and no data-dependent shapes, so the graph exports to static ONNX. Module
attribute names follow the original checkpoints' key names (docs/model.md, "Checkpoints").
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from loftr_ros.model.presets import CROSS, SELF, ModelConfig

# ------------------------------------------------------------------------------------------------
# Backbone


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3(stride)-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU."""

    def __init__(self, in_dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, out_dim, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_dim)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_dim)
        self.downsample: Optional[nn.Sequential] = None
        if stride != 1 or in_dim != out_dim:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_dim, out_dim, 1, stride=stride, bias=False), nn.BatchNorm2d(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = F.relu(self.bn1(self.conv1(x)))
        residual = self.bn2(self.conv2(residual))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(residual + shortcut)


class FineHead(nn.Module):
    """Fine feature head: the backbone map at the fine stride, plus the next (coarser) layer's map
    upsampled x2, fused by a 3x3 conv; output L2-normalised to length sqrt(C) (it is correlated,
    not classified)."""

    def __init__(self, fine_in: int, context_in: int, dim: int) -> None:
        super().__init__()
        self.lateral = nn.Conv2d(fine_in, dim, 1, bias=False)
        self.context = nn.Conv2d(context_in, dim, 1, bias=False)
        self.fuse = nn.Sequential(
            nn.BatchNorm2d(dim), nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 3, padding=1, bias=False))

    def forward(self, fine_map: torch.Tensor, context_map: torch.Tensor) -> torch.Tensor:
        features = self._fused(fine_map, context_map)
        # Unit length times sqrt(C): correlation logits <f0,f1>/sqrt(C)/T are cos/T, a bounded,
        # well-conditioned range that can still be sharp (1/T = 10).
        if torch.onnx.is_in_onnx_export():
            # one pass for the norms (ReduceL2) and one for the scaling; the rest of the
            # arithmetic works on the [N,1,H,W] norms
            length = torch.linalg.vector_norm(features, dim=1, keepdim=True)
            scale = float(features.shape[1]) ** 0.5 / torch.sqrt(length * length + 1e-6)
            return features * scale
        norm = torch.sqrt((features * features).sum(dim=1, keepdim=True) + 1e-6)
        return features * (float(features.shape[1]) ** 0.5) / norm

    def _fused(self, fine_map: torch.Tensor, context_map: torch.Tensor) -> torch.Tensor:
        # The fine map is exactly twice the context map (inputs are multiples of the coarse
        # stride); a scale factor, unlike a size, exports as a Resize without Shape ops.
        context = F.interpolate(self.context(context_map), scale_factor=2.0, mode="bilinear",
                                align_corners=False)
        return self.fuse(self.lateral(fine_map) + context)


class Backbone(nn.Module):
    """Stem (7x7/2) + ResNet layers down to the coarse stride + 1x1 coarse head (no BN/act).

    The coarse head is named ``layer{N}_outconv`` after the last layer, as in the checkpoints.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, config.initial_dim, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(config.initial_dim)
        in_dim = config.initial_dim
        self.num_layers = len(config.block_dims)
        for index, (out_dim, stride) in enumerate(zip(config.block_dims, config.block_strides)):
            layer = nn.Sequential(BasicBlock(in_dim, out_dim, stride),
                                  BasicBlock(out_dim, out_dim, 1))
            setattr(self, f"layer{index + 1}", layer)
            in_dim = out_dim
        setattr(self, f"layer{self.num_layers}_outconv",
                nn.Conv2d(in_dim, config.block_dims[-1], 1, bias=False))
        self.fine_layer: Optional[int] = None
        self.fine_head: Optional[FineHead] = None
        if config.fine is not None:
            self.fine_layer = config.stage_strides.index(config.fine.stride)
            if self.fine_layer + 1 >= self.num_layers:
                raise ValueError("the fine stride must be finer than the coarse stride")
            self.fine_head = FineHead(config.block_dims[self.fine_layer],
                                      config.block_dims[self.fine_layer + 1], config.fine.dim)

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """images [N,1,H,W] -> (coarse map [N,C,H/s,W/s], fine map [N,Cf,H/f,W/f] or None)."""
        x = F.relu(self.bn1(self.conv1(images)))
        stage_outputs: List[torch.Tensor] = []
        for index in range(self.num_layers):
            x = getattr(self, f"layer{index + 1}")(x)
            stage_outputs.append(x)
        coarse = getattr(self, f"layer{self.num_layers}_outconv")(x)
        fine = None
        if self.fine_head is not None and self.fine_layer is not None:
            fine = self.fine_head(stage_outputs[self.fine_layer],
                                  stage_outputs[self.fine_layer + 1])
        return coarse, fine


# ------------------------------------------------------------------------------------------------
# Positional encoding


def sine_position_encoding(d_model: int, height: int, width: int, variant: str) -> torch.Tensor:
    """2D sine positional encoding [1, d_model, height, width] (docs/model.md).

    Channel 4k = sin(x w_k), 4k+1 = cos(x w_k), 4k+2 = sin(y w_k), 4k+3 = cos(y w_k) with 1-based
    x = col + 1, y = row + 1; ``fixed``: w_k = 10000^(-4k/C); ``buggy``: w_k = exp(-2k).
    """
    if d_model % 4:
        raise ValueError(f"d_model {d_model} must be a multiple of 4 for the 2D sine encoding")
    k = torch.arange(d_model // 4, dtype=torch.float64)
    if variant == "fixed":
        omega = torch.exp(-4.0 * k * math.log(10000.0) / d_model)
    elif variant == "buggy":
        omega = torch.exp(-2.0 * k)
    else:
        raise ValueError(f"unknown positional encoding variant {variant!r}")
    x = torch.arange(1, width + 1, dtype=torch.float64)[None, :].expand(height, width)
    y = torch.arange(1, height + 1, dtype=torch.float64)[:, None].expand(height, width)
    pe = torch.zeros(d_model, height, width, dtype=torch.float64)
    pe[0::4] = torch.sin(x[None] * omega[:, None, None])
    pe[1::4] = torch.cos(x[None] * omega[:, None, None])
    pe[2::4] = torch.sin(y[None] * omega[:, None, None])
    pe[3::4] = torch.cos(y[None] * omega[:, None, None])
    return pe.float().unsqueeze(0)


# ------------------------------------------------------------------------------------------------
# Linear-attention transformer


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1 (positive feature map of linear attention).

    Exported as relu(x) + exp(min(x, 0)), the same function (x + 1 above 0, e^x below, equal
    within float rounding): onnxruntime's CPU kernels for Relu, Clip and Exp take half the time
    of its Elu, and TensorRT 8.2 parses them. PyTorch runs F.elu, one kernel forward and backward
    (the written-out form trains slower).
    """
    if torch.onnx.is_in_onnx_export():
        return F.relu(x) + torch.exp(torch.clamp(x, max=0.0))
    return F.elu(x) + 1.0


class EncoderLayer(nn.Module):
    """One LoFTR encoder layer with linear attention (docs/model.md, "Transformer", steps 1-5)."""

    def __init__(self, d_model: int, nhead: int, ln_eps: float) -> None:
        super().__init__()
        self.nhead = nhead
        self.head_dim = d_model // nhead
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.merge = nn.Linear(d_model, d_model, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * d_model, 2 * d_model, bias=False), nn.ReLU(inplace=True),
            nn.Linear(2 * d_model, d_model, bias=False))
        self.norm1 = nn.LayerNorm(d_model, eps=ln_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=ln_eps)

    def head_mask(self, like: torch.Tensor) -> torch.Tensor:
        """[C,C] block-diagonal 0/1 mask: channel pairs that belong to the same head."""
        heads = torch.arange(self.nhead * self.head_dim, device=like.device) // self.head_dim
        return (heads[:, None] == heads[None, :]).to(like.dtype)

    def head_columns(self, like: torch.Tensor) -> torch.Tensor:
        """[C,H] 0/1 matrix: channel c belongs to head h."""
        heads = torch.arange(self.nhead * self.head_dim, device=like.device) // self.head_dim
        return (heads[:, None] == torch.arange(self.nhead, device=like.device)[None, :]).to(
            like.dtype)

    def linear_attention(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """x [N,L,C] attends to source [N,S,C] -> [N,L,C].

        Per head h: out_h = phi(q_h) KV_h / (phi(q_h) . mean_s phi(k_h)), KV_h = phi(k_h)^T v_h / S.
        All heads are computed at once with [C,C] matrices masked to the head blocks, which is the
        same arithmetic without any head transposes in the exported graph. The denominators go
        through a [C,H] matrix (one per head) and back to the head's channels with its transpose:
        2H/C of the multiply-adds of one [C,C] product.

        The exported graph writes two steps in a cheaper, equal form (verified against this one
        by ``loftr-export``): KV as (phi(k)^T source / S) Wv^T, so the value projection works on
        a [C,C] matrix instead of on S tokens, and the division by the denominators on the
        [N,L,H,C/H] view of the numerators (a reshape, no copy) instead of a [L,C] expansion.
        """
        source_length = int(source.shape[1])
        query = elu_feature_map(self.q_proj(x))                              # [N,L,C]
        key = elu_feature_map(self.k_proj(source))                           # [N,S,C]
        mask = self.head_mask(x)
        if torch.onnx.is_in_onnx_export():
            # KV = phi(k)^T (source Wv^T) / S = (phi(k)^T source / S) Wv^T: the same product
            # with the value projection on a [C,C] matrix instead of all S tokens
            key_source = torch.matmul(key.transpose(1, 2) / source_length, source)  # [N,C,C]
            key_value = torch.matmul(key_source, self.v_proj.weight.t()) * mask
        else:
            # Dividing v by S keeps KV an average (fp16 range).
            value = self.v_proj(source) / source_length                      # [N,S,C]
            key_value = torch.matmul(key.transpose(1, 2), value) * mask      # [N,C,C]
        # The MEAN of phi(k), not the sum: exactly equal after the 1/S above, but the sum over S
        # reaches ~1e5 on real images and overflows fp16.
        key_mean = key.mean(dim=1, keepdim=True).transpose(1, 2)            # [N,C,1]
        columns = self.head_columns(x)                                      # [C,H]
        denominator = torch.matmul(query, key_mean * columns) + 1e-6 / source_length  # [N,L,H]
        if torch.onnx.is_in_onnx_export():
            # each head's numerators divided by its denominator, on a view with a head axis
            batch, length, channels = (int(v) for v in query.shape)
            numerator = torch.matmul(query, key_value).reshape(
                batch, length, self.nhead, self.head_dim)
            return (numerator / denominator.unsqueeze(3)).reshape(batch, length, channels)
        denominator = torch.matmul(denominator, columns.t())                 # [N,L,C]
        return torch.matmul(query, key_value) / denominator                 # [N,L,C]

    @staticmethod
    def _layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        # Written out so that every opset exports elementary ops: ONNX LayerNormalization
        # (opset 17) is only parsed by TensorRT 8.6+, and JetPack 5 ships 8.5.
        # Pow (not centred * centred): onnxruntime fuses exactly this pattern into one kernel.
        centred = x - x.mean(dim=-1, keepdim=True)
        variance = centred.pow(2).mean(dim=-1, keepdim=True)
        return centred / torch.sqrt(variance + norm.eps) * norm.weight + norm.bias

    def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        message = self._layer_norm(self.merge(self.linear_attention(x, source)), self.norm1)
        message = self._layer_norm(self.mlp(torch.cat([x, message], dim=2)), self.norm2)
        return x + message


class LocalFeatureTransformer(nn.Module):
    """Self and cross layers in the config's order; cross layers update f0 first and feed the
    updated f0 to f1."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.layer_names = list(config.layer_names)
        self.layers = nn.ModuleList(
            [EncoderLayer(config.d_model, config.nhead, config.ln_eps) for _ in self.layer_names])

    @property
    def per_image_layers(self) -> int:
        """How many layers come before the first cross layer: they see one image only."""
        return self.layer_names.index(CROSS) if CROSS in self.layer_names else len(
            self.layer_names)

    def encode(self, feat: torch.Tensor) -> torch.Tensor:
        """The per-image layers (:attr:`per_image_layers`) on one image's tokens [N,L,C]."""
        for layer in self.layers[:self.per_image_layers]:
            feat = layer(feat, feat)
        return feat

    def forward(self, feat0: torch.Tensor, feat1: torch.Tensor,
                start: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
        """Layers ``start`` onwards on both images' tokens (``start`` = :attr:`per_image_layers`
        continues from :meth:`encode`)."""
        batch = int(feat0.shape[0])
        for layer, kind in list(zip(self.layers, self.layer_names))[start:]:
            if kind == SELF:
                # Both images in one batch: same numbers, half the graph nodes.
                both = torch.cat([feat0, feat1], dim=0)
                both = layer(both, both)
                feat0, feat1 = both[:batch], both[batch:]
            elif kind == CROSS:
                feat0 = layer(feat0, feat1)
                feat1 = layer(feat1, feat0)
            else:  # pragma: no cover - ModelConfig validates layer names
                raise ValueError(kind)
        return feat0, feat1


# ------------------------------------------------------------------------------------------------
# Full model


def dual_softmax(feat0: torch.Tensor, feat1: torch.Tensor, temperature: float) -> Tuple[
        torch.Tensor, torch.Tensor]:
    """Dual-softmax confidence: returns (conf [N,L,S], similarity/temperature [N,L,S])."""
    channels = int(feat0.shape[-1])
    similarity = torch.matmul(feat0, feat1.transpose(1, 2)) / (channels * temperature)
    conf = F.softmax(similarity, dim=1) * F.softmax(similarity, dim=2)
    return conf, similarity


class CoarseLoFTR(nn.Module):
    """Coarse-only LoFTR (+ optional fine feature head).

    ``forward(image0, image1)`` takes float32 [N,1,H,W] in [0,1] and returns a dict with
    ``conf_matrix`` [N,L,S], ``sim_matrix`` [N,L,S] (logits before the dual softmax) and, for models
    with a fine stage, ``fine_feat0`` / ``fine_feat1`` [N,Cf,H/f,W/f].
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = Backbone(config)
        self.loftr_coarse = LocalFeatureTransformer(config)
        self._pe_cache: Dict[Tuple[int, int], torch.Tensor] = {}

    def position_encoding(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """PE for a coarse grid of height x width, cached per size (never saved in checkpoints)."""
        key = (height, width)
        if key not in self._pe_cache:
            self._pe_cache[key] = sine_position_encoding(
                self.config.d_model, height, width, self.config.pe_variant)
        return self._pe_cache[key].to(device=like.device, dtype=like.dtype)

    def extract(self, image0: torch.Tensor, image1: torch.Tensor) -> Tuple[
            torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Backbone + PE + transformer -> (feat0 [N,L,C], feat1 [N,S,C], fine0, fine1)."""
        batch = int(image0.shape[0])
        if tuple(image0.shape) == tuple(image1.shape):
            coarse, fine = self.backbone(torch.cat([image0, image1], dim=0))
            coarse0, coarse1 = coarse[:batch], coarse[batch:]
            fine0 = fine[:batch] if fine is not None else None
            fine1 = fine[batch:] if fine is not None else None
        else:
            coarse0, fine0 = self.backbone(image0)
            coarse1, fine1 = self.backbone(image1)
        feats = []
        for coarse_map in (coarse0, coarse1):
            channels, height, width = (int(v) for v in coarse_map.shape[1:])
            coarse_map = coarse_map + self.position_encoding(height, width, coarse_map)
            feats.append(coarse_map.reshape(batch, channels, height * width).transpose(1, 2))
        feat0, feat1 = self.loftr_coarse(feats[0], feats[1])
        return feat0, feat1, fine0, fine1

    def encode(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Encoder stage, one image [N,1,H,W] in [0,1] -> ``coarse_feat`` [N,L,C] (tokens after
        the per-image transformer layers) and, for models with a fine stage, ``fine_feat``
        [N,Cf,H/f,W/f]. Everything here depends on this image alone."""
        coarse_map, fine_map = self.backbone(image)
        batch, channels, height, width = (int(v) for v in coarse_map.shape)
        coarse_map = coarse_map + self.position_encoding(height, width, coarse_map)
        tokens = coarse_map.reshape(batch, channels, height * width).transpose(1, 2)
        encoded = {"coarse_feat": self.loftr_coarse.encode(tokens)}
        if fine_map is not None:
            encoded["fine_feat"] = fine_map
        return encoded

    def match_encoded(self, coarse_feat0: torch.Tensor, coarse_feat1: torch.Tensor
                      ) -> Dict[str, torch.Tensor]:
        """Matcher stage: two :meth:`encode` ``coarse_feat`` tensors [N,L,C], [N,S,C] ->
        ``conf_matrix`` and ``sim_matrix`` [N,L,S], as :meth:`forward` computes them."""
        feat0, feat1 = self.loftr_coarse(coarse_feat0, coarse_feat1,
                                         start=self.loftr_coarse.per_image_layers)
        conf, similarity = dual_softmax(feat0, feat1, self.config.temperature)
        return {"conf_matrix": conf, "sim_matrix": similarity}

    def forward(self, image0: torch.Tensor, image1: torch.Tensor) -> Dict[str, torch.Tensor]:
        feat0, feat1, fine0, fine1 = self.extract(image0, image1)
        conf, similarity = dual_softmax(feat0, feat1, self.config.temperature)
        outputs = {"conf_matrix": conf, "sim_matrix": similarity}
        if fine0 is not None and fine1 is not None:
            outputs["fine_feat0"] = fine0
            outputs["fine_feat1"] = fine1
        return outputs


def init_weights(model: nn.Module) -> None:
    """Training-from-scratch init: Kaiming-normal convs, BN 1/0, Xavier-uniform linear layers."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)


def build_model(config: ModelConfig) -> CoarseLoFTR:
    """Build a freshly initialised model for ``config`` (eval mode off; caller decides)."""
    model = CoarseLoFTR(config)
    init_weights(model)
    return model
