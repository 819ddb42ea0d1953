"""Helpers of the Python tests."""
import torch


def cuda_ready():
    import topk
    return torch.cuda.is_available() and topk.cuda_available()


def rand(*shape, dtype=torch.float32, device="cpu", seed=None, scale=1.0):
    g = torch.Generator().manual_seed(seed if seed is not None else sum(shape) * 7919 + len(shape))
    return (scale * torch.randn(*shape, generator=g)).to(device=device, dtype=dtype)


def cache_view(B, S, H, D, spare=3, dtype=torch.float32, device="cpu", seed=0):
    """A [B, S, H, D] view of a larger [B, H, S + spare, D] cache (HF's layout, transposed):
    strided, last dim contiguous, as topk takes it without a copy."""
    full = rand(B, H, S + spare, D, dtype=dtype, device=device, seed=seed)
    return full[:, :, :S].transpose(1, 2)
