"""A request's arithmetic in a batch exactly as alone, on the CPU.

On the CPU, two kinds of op in these models pick their kernel by the size of the whole batch,
and the kernels round differently (measured with torch 2.13, MKL and oneDNN, 1 and 2 threads):
- a matrix product with one row per batch row, or a few (the UNet's timestep and
  added-condition embeddings and each ResNet block's projection of them, SDXL's pooled text
  projection, an IP-Adapter's image projection):
  MKL's sgemm takes one path for 1 row, another for 2 or 3, another for 4 or more;
- a convolution on one image too small for oneDNN to pay (under 20480 input values, or with
  a 1x1 kernel on one thread): PyTorch runs its own im2col kernel for it instead
  (`torch._C._select_conv_backend` says which), but oneDNN's as soon as the batch has more.
Everything else computes each row the same in any batch: matrix products over tokens or
pixels (4 rows and more: the same sgemm path), oneDNN's and the im2col convolutions, the
normalisations, attention and the samplers' elementwise steps.

Layout counts too: a matrix product or convolution on a differently strided input takes
another kernel. The denoising loop keeps each row's layout as alone (denoise.RunningBatch.step),
and without VAE slicing each image is decoded alone.

So inside a batch those two ops run on each request's rows alone (its unconditional and
conditional rows, or its one row without CFG), in the shape they have when it runs alone; the
rest of the batch stays one batch. The embeddings are tiny (and in SD alike for every row:
computed once per row count), and the convolutions that need it are those too small for
oneDNN alone: all of the tiny test models', only the UNet's first one in SD1.5 at 512 px, none
in SDXL at 1024 px. A request alone runs exactly as plain diffusers does, with nothing added.

Not covered: GPUs, where cuBLAS and cuDNN choose kernels by shape for every matrix product and
convolution, and a compiled UNet, which runs the kernels generated for the batch's shape; there
a batch matches alone up to the last bits of the latents (a grey level here and there).
"""

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair
from torch.overrides import TorchFunctionMode


def each_request_alone(groups: list[list[int]], device: torch.device, *, attention=False):
    """Context in which a model call on a batch made of `groups` (each request's rows, in
    the batch's row order) computes every request's rows as that request alone would.
    With `attention`, attention too runs per request: CPU attention over a few tokens (an
    image encoder's 17) rounds by batch size; over a UNet's pixels it doesn't, and there it
    is the costly part. Nothing to do for one request, or on a GPU (see the docstring)."""
    if len(groups) < 2 or device.type != "cpu":
        return nullcontext()
    return _RowsAlone(groups, attention=attention)


class _RowsAlone(TorchFunctionMode):
    def __init__(self, groups: list[list[int]], *, attention: bool):
        super().__init__()
        self.attention = attention
        self.rows = sum(len(group) for group in groups)
        self.groups = [torch.tensor(group) for group in groups]
        self.smallest_group = min(len(group) for group in groups)
        self._conv_splits = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        batch = args[0] if args else None
        if torch.compiler.is_compiling():
            # A compiled UNet runs the kernels its compiler generated for the batch's shape.
            return func(*args, **kwargs)
        if isinstance(batch, torch.Tensor) and batch.dim() > 1 and batch.shape[0] == self.rows:
            if func is F.linear and self._few_rows_alone(batch):
                if torch.equal(batch, batch[:1].expand_as(batch)):
                    return self._same_rows(func, args, kwargs)
                return self._by_group(func, self.groups, args, kwargs)
            if func is F.conv2d:
                parts = self._conv_parts(*args, **kwargs)
                if len(parts) > 1:
                    return self._by_group(func, parts, args, kwargs)
            if func is F.scaled_dot_product_attention and self.attention:
                return self._attention_by_group(func, args, kwargs)
        return func(*args, **kwargs)

    def _attention_by_group(self, func, args, kwargs):
        """Attention on each request's rows: query, key, value (and a per-row mask) sliced
        alike, as views, so each keeps the strides it has alone."""
        outputs = []
        for group in self.groups:
            start, stop = int(group[0]), int(group[-1]) + 1  # consecutive rows (encoders')
            sliced = [arg[start:stop] for arg in args[:3]]
            part_kwargs = dict(kwargs)
            mask = part_kwargs.get("attn_mask")
            if isinstance(mask, torch.Tensor) and mask.dim() > 2 and mask.shape[0] == self.rows:
                part_kwargs["attn_mask"] = mask[start:stop]
            outputs.append(func(*sliced, *args[3:], **part_kwargs))
        return torch.cat(outputs)

    def _few_rows_alone(self, batch):
        """Whether a request alone would give this matrix product under 4 rows (per batch
        row: one, or a few tokens such as an image prompt's), where MKL's path changes."""
        return math.prod(batch.shape[1:-1]) * self.smallest_group < 4

    def _conv_parts(self, batch, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        """The requests whose rows get another convolution kernel alone than in the batch,
        one part each, and the others as one part (the same kernel for them, row for row)."""
        key = (batch.shape, batch.dtype, weight.shape, stride, padding, dilation, groups)
        if key not in self._conv_splits:
            if isinstance(padding, str):  # "same" or "valid": can't ask, so run each alone
                self._conv_splits[key] = self.groups
            else:

                def backend(rows):
                    return torch._C._select_conv_backend(
                        batch[:rows], weight, bias, _pair(stride), _pair(padding),
                        _pair(dilation), False, [0, 0], groups,
                    )

                batched = backend(self.rows)
                same = {size: backend(size) == batched for size in {len(g) for g in self.groups}}
                alone = [group for group in self.groups if not same[len(group)]]
                together = [group for group in self.groups if same[len(group)]]
                if together:
                    alone.append(torch.cat(together))
                self._conv_splits[key] = alone
        return self._conv_splits[key]

    def _same_rows(self, func, args, kwargs):
        """A matrix product whose rows are all alike (SD's timestep embedding: one timestep
        for the batch) gives every request of a size the same rows: one product per size."""
        batch, rest = args[0], args[1:]
        products = {}
        for group in self.groups:
            if len(group) not in products:
                products[len(group)] = func(batch[: len(group)], *rest, **kwargs)
        return self._in_batch_order(self.groups, [products[len(group)] for group in self.groups])

    def _by_group(self, func, parts, args, kwargs):
        batch, rest = args[0], args[1:]
        # The layout the rows have in the batch, which they would have alone too: kernels
        # are chosen by layout as well.
        layout = torch.contiguous_format
        if batch.dim() == 4 and not batch.is_contiguous():
            if batch.is_contiguous(memory_format=torch.channels_last):
                layout = torch.channels_last
        outputs = [
            func(batch[rows].contiguous(memory_format=layout), *rest, **kwargs) for rows in parts
        ]
        return self._in_batch_order(parts, outputs)

    @staticmethod
    def _in_batch_order(parts, outputs):
        """One output per part of the batch's rows, back in the batch's row order."""
        return torch.cat(outputs)[torch.cat(parts).argsort()]
