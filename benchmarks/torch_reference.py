"""PyTorch reference of privjax's Siamese training step, timed by benchmarks/train_step.py.

The same computation as `privjax.train.step.make_train_step` on `privjax.models.SplitModel`:
  * network: layer list read from privjax's ARCHITECTURES (normalise raw 0..255 pixels, 3x3 conv +
    ReLU, 2x2 max-pool, dense + ReLU, classifier), cut at the same layer; dense layers flatten NHWC
    in (H, W, C) order as privjax does;
  * loss: 2 x mean cross-entropy over the 2B images + weight x contrastive loss on the flattened cut
    features (0.5 * mean(y d^2 + (1 - y) max(0, margin - d)^2), Hadsell et al. 2006);
  * optimizer: Adam (b1=0.9, b2=0.999, eps=1e-8), the head at head_lr_mult x the extractor's rate.
Images arrive as uint8 [B, 2, S, S, 3] and are permuted to NCHW views, which are channels-last in
memory. PyTorch is optional and not a privjax dependency; nothing in privjax imports this file.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from privjax.models import vgg


class Normalize(nn.Module):

  def __init__(self, mean, std):
    super().__init__()
    self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
    self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

  def forward(self, x):
    return (x.float() / 255.0 - self.mean) / self.std


class Dense(nn.Module):

  def __init__(self, in_features, out_features, relu):
    super().__init__()
    self.linear = nn.Linear(in_features, out_features)
    self.relu = relu

  def forward(self, x):
    if x.dim() == 4:  # NCHW view of channels-last memory: (H, W, C) order needs no copy
      x = x.permute(0, 2, 3, 1)
    y = self.linear(x.flatten(1))
    return F.relu(y) if self.relu else y


def _layers(specs, shape, num_classes):
  layers = []
  for spec in specs:
    if spec.kind == 'conv':
      layers += [nn.Conv2d(shape[-1], spec.features, 3, padding=1), nn.ReLU()]
      shape = shape[:-1] + (spec.features,)
    elif spec.kind == 'pool':
      layers.append(nn.MaxPool2d(2))
      shape = (shape[0] // 2, shape[1] // 2, shape[2])
    else:
      out = num_classes if spec.kind == 'classifier' else spec.features
      size = 1
      for s in shape:
        size *= s
      layers.append(Dense(size, out, relu=spec.kind == 'dense'))
      shape = (out,)
  return layers


class SplitVGG(nn.Module):

  def __init__(
      self, arch: str, cut: str, num_classes: int, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)
  ):
    super().__init__()
    spec = vgg.get_architecture(arch)
    vgg.check_cut(spec, cut)
    k = spec.layer_names.index(cut) + 1
    size = spec.image_size
    self.extractor = nn.Sequential(
        Normalize(mean, std), *_layers(spec.layers[:k], (size, size, 3), num_classes)
    )
    self.head = nn.Sequential(*_layers(spec.layers[k:], vgg.feature_shape(spec, cut), num_classes))

  def forward(self, x):
    features = self.extractor(x)
    return features, self.head(features)


def to_nchw(images: torch.Tensor) -> torch.Tensor:
  """uint8 [B, 2, S, S, 3] pair rows → [2B, 3, S, S] (a channels-last view, no copy)."""
  return images.reshape((-1,) + tuple(images.shape[2:])).permute(0, 3, 1, 2)


def siamese_loss(model, images, labels, same, *, weight: float, margin: float):
  features, logits = model(to_nchw(images))
  ce = F.cross_entropy(logits.float(), labels.reshape(-1))
  f = features.float().reshape(features.shape[0] // 2, 2, -1)
  d2 = (f[:, 0] - f[:, 1]).square().sum(-1)
  d = d2.clamp_min(1e-12).sqrt()
  contrastive = 0.5 * (same * d2 + (1 - same) * (margin - d).clamp_min(0).square()).mean()
  return 2.0 * ce + weight * contrastive


def make_train_step(
    model: SplitVGG,
    *,
    lr: float,
    head_lr_mult: float,
    weight: float,
    margin: float,
    compile: bool = False,
    autocast_dtype=None,
):
  """step(images uint8 [B,2,S,S,3], labels [B,2] int64, same [B] float) → loss (a tensor)."""
  device_type = next(model.parameters()).device.type
  optimizer = torch.optim.Adam(
      [
          {'params': model.extractor.parameters(), 'lr': lr},
          {'params': model.head.parameters(), 'lr': lr * head_lr_mult},
      ],
      betas=(0.9, 0.999),
      eps=1e-8,
  )

  def loss_fn(images, labels, same):
    with torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
      return siamese_loss(model, images, labels, same, weight=weight, margin=margin)

  def update():
    optimizer.step()

  if compile:
    loss_fn = torch.compile(loss_fn)
    update = torch.compile(update)

  def step(images, labels, same):
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(images, labels, same)
    loss.backward()
    update()
    return loss.detach()

  return step


def make_extract(model: SplitVGG, *, compile: bool = False, autocast_dtype=None):
  device_type = next(model.parameters()).device.type

  @torch.no_grad()
  def extract(images):  # uint8 [N, S, S, 3]
    with torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
      return model.extractor(images.permute(0, 3, 1, 2))

  return torch.compile(extract) if compile else extract
