"""Parameter initialisation, PyTorch's defaults."""
import math

from engine import backend
from engine.random import default_generator


def uniform_(tensor, low, high, generator=None):
    """Fill ``tensor`` in place with U(low, high) samples from ``generator`` (default: the engine's)."""
    generator = generator or default_generator()
    values = generator.uniform(low, high, size=tensor.shape).astype(tensor.dtype)
    tensor.data[...] = backend.to_device(values, tensor.device)
    return tensor


def fan_in_uniform_(tensor, fan_in, generator=None):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): what PyTorch's Linear (and Conv) use for weight
    and bias. (Its kaiming_uniform_(a=sqrt(5)) for the weight gives exactly this bound:
    gain sqrt(2/(1+a^2)) = sqrt(1/3), bound = gain * sqrt(3/fan_in) = 1/sqrt(fan_in).)"""
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return uniform_(tensor, -bound, bound, generator)
