"""The standard few-shot backbone: four blocks of conv 3x3, batch norm, ReLU and 2x2 max-pooling.

Used as the embedding of prototypical networks (Snell et al. 2017) and, with a linear head, as the
classifier of MAML (Finn et al. 2017; Vinyals et al. 2016 for the architecture).

References:
    Vinyals, Blundell, Lillicrap, Kavukcuoglu, Wierstra. "Matching Networks for One Shot
    Learning." NeurIPS 2016.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ConvClassifier", "ConvEmbedding", "conv_output_size"]


def conv_output_size(image_size: int, blocks: int) -> int:
    """Side length after ``blocks`` 2x2 max-pools (floor division), e.g. 28 -> 1, 84 -> 5."""
    for _ in range(blocks):
        image_size //= 2
    if image_size < 1:
        raise ValueError(f"{blocks} pooling blocks leave nothing of the image; use fewer blocks")
    return image_size


class ConvEmbedding(nn.Module):
    """Conv-4 embedding: ``blocks`` x (conv 3x3 -> batch norm -> ReLU -> max-pool 2x2).

    Args:
        in_channels: channels of the input images (1 for glyphs / Omniglot, 3 for mini-ImageNet).
        hidden: filters per conv layer (64 in the literature).
        blocks: number of blocks (4 in the literature).
        track_running_stats: keep batch-norm running statistics for evaluation mode. MAML turns it
            off and normalises with the statistics of each batch, as in Finn et al.'s code.

    Raises:
        ValueError: on a non-positive size.
    """

    def __init__(
        self,
        in_channels: int,
        hidden: int = 64,
        blocks: int = 4,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__()
        if min(in_channels, hidden, blocks) < 1:
            raise ValueError(
                f"in_channels, hidden and blocks must be >= 1, got {in_channels}, {hidden}, "
                f"{blocks}"
            )
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(blocks):
            layers += [
                nn.Conv2d(channels, hidden, kernel_size=3, padding=1),
                nn.BatchNorm2d(hidden, track_running_stats=track_running_stats),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = hidden
        self.layers = nn.Sequential(*layers)
        self.hidden = hidden
        self.blocks = blocks

    def output_dim(self, image_size: int) -> int:
        """Length of the flattened embedding of a square ``image_size`` image."""
        return self.hidden * conv_output_size(image_size, self.blocks) ** 2

    def forward(self, x: Tensor) -> Tensor:
        """Embeddings ``[b, output_dim]`` of images ``[b, in_channels, h, w]``."""
        if x.dim() != 4:
            raise ValueError(f"expected images [b, c, h, w], got shape {tuple(x.shape)}")
        return self.layers(x).flatten(1)


class ConvClassifier(nn.Module):
    """A :class:`ConvEmbedding` followed by a linear layer to ``ways`` logits (MAML's model).

    Args:
        in_channels: channels of the input images.
        ways: number of output classes.
        image_size: side length of the (square) input images.
        hidden: filters per conv layer.
        blocks: number of conv blocks.
        track_running_stats: see :class:`ConvEmbedding` (off for MAML).
    """

    def __init__(
        self,
        in_channels: int,
        ways: int,
        image_size: int,
        hidden: int = 64,
        blocks: int = 4,
        track_running_stats: bool = False,
    ) -> None:
        super().__init__()
        self.features = ConvEmbedding(in_channels, hidden, blocks, track_running_stats)
        self.head = nn.Linear(self.features.output_dim(image_size), ways)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[b, ways]``."""
        return self.head(self.features(x))
