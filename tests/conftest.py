import pytest
import torch

# a Swin small enough for CPU unit tests: 4 stages, window 4, 32x32 input
TINY_SWIN = dict(
    img_size=32,
    patch_size=2,
    embed_dim=16,
    depths=(2, 2, 2, 2),
    num_heads=(1, 2, 2, 4),
    window_size=4,
    num_classes=10,
    drop_path_rate=0.0,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randomize_(model: torch.nn.Module, std: float = 0.02) -> torch.nn.Module:
    """Noise on every parameter, norms and biases included (they init to 1/0), so conversions are fully exercised."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * std)
    return model
