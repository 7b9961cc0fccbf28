"""Input preprocessing recorded with a model: what raw inputs it expects and how
they are scaled before the first layer, so `cconv predict` does the same thing
as the training script did.

    prep = Preprocessing(scale=16, raw_range=(0, 16))   # digits: pixels 0..16
    cconv.save(net, "digits.safetensors", preprocessing=prep)
    x = prep.apply(raw)                                  # (raw / scale - mean) / std

The spec is stored as JSON under the metadata key "cconv.preprocessing"; older
files that only have "input_scale" read as Preprocessing(scale=input_scale).
"""
import json
import warnings

import numpy as np

__all__ = ["METADATA_KEY", "Preprocessing", "PreprocessingWarning"]

METADATA_KEY = "cconv.preprocessing"


class PreprocessingWarning(UserWarning):
    """Inputs that do not look like what the model's preprocessing expects."""


def _channel_values(value, name):
    if value is None:
        return None
    try:
        arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        arr = np.zeros((0,))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"Preprocessing: {name} must be a finite number or a list of "
                         f"per-channel numbers, got {value!r}")
    return arr


class Preprocessing:
    """x -> (x / scale - mean) / std, with mean/std scalars or per channel (axis 1).

    raw_range: (low, high) of the raw inputs the model was trained on, used to
    warn about inputs that were already scaled (or not scaled at all).
    """

    def __init__(self, scale=1.0, mean=None, std=None, raw_range=None):
        scale = float(scale)
        if not np.isfinite(scale) or scale == 0:
            raise ValueError(f"Preprocessing: scale must be a finite non-zero number, "
                             f"got {scale!r}")
        self.scale = scale
        self.mean = _channel_values(mean, "mean")
        self.std = _channel_values(std, "std")
        if self.std is not None and np.any(self.std == 0):
            raise ValueError(f"Preprocessing: std must be non-zero, got {std!r}")
        if raw_range is not None:
            low, high = (float(v) for v in raw_range)
            if not (np.isfinite(low) and np.isfinite(high) and low < high):
                raise ValueError(f"Preprocessing: raw_range must be (low, high) with "
                                 f"low < high, got {raw_range!r}")
            raw_range = (low, high)
        self.raw_range = raw_range

    # ---- metadata
    def to_dict(self):
        out = {"scale": self.scale}
        if self.mean is not None:
            out["mean"] = self.mean.tolist()
        if self.std is not None:
            out["std"] = self.std.tolist()
        if self.raw_range is not None:
            out["raw_range"] = list(self.raw_range)
        return out

    @classmethod
    def from_metadata(cls, metadata):
        """The spec stored in a file's metadata, or None when it records none."""
        if METADATA_KEY in metadata:
            try:
                spec = json.loads(metadata[METADATA_KEY])
                if not isinstance(spec, dict):
                    raise TypeError(f"a JSON object expected, got {type(spec).__name__}")
                return cls(**spec)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"the stored preprocessing {metadata[METADATA_KEY]!r} "
                                 f"is unusable: {exc}") from None
        if "input_scale" in metadata:   # files written before the spec existed
            return cls(scale=float(metadata["input_scale"]))
        return None

    # ---- applying
    def check(self, raw):
        """Warn when raw inputs lie far outside the range the model was trained on."""
        if self.raw_range is None or raw.size == 0:
            return
        low, high = self.raw_range
        top = float(np.nanmax(raw))
        span = high - low
        if top > high + 0.5 * span or float(np.nanmin(raw)) < low - 0.5 * span:
            warnings.warn(f"inputs span [{np.nanmin(raw):g}, {top:g}] but the model was "
                          f"trained on raw values in [{low:g}, {high:g}]",
                          PreprocessingWarning, stacklevel=3)
        elif self.scale != 1 and high > 1.5 and top <= 1.0:
            warnings.warn(f"inputs lie in [0, 1] but the model expects raw values in "
                          f"[{low:g}, {high:g}] and divides them by {self.scale:g}: they "
                          f"look already scaled (pass scale 1 to use them as they are)",
                          PreprocessingWarning, stacklevel=3)

    def apply(self, raw, dtype=np.float32):
        """(raw / scale - mean) / std as dtype; mean/std broadcast over axis 1."""
        x = np.asarray(raw, dtype=dtype)
        self.check(x)
        x = x / dtype(self.scale) if self.scale != 1 else x.copy()
        for values, op in ((self.mean, np.subtract), (self.std, np.divide)):
            if values is None:
                continue
            if values.size > 1:
                if x.ndim < 2 or x.shape[1] != values.size:
                    raise ValueError(f"Preprocessing has {values.size} per-channel values "
                                     f"but the inputs have shape {x.shape} (channels on "
                                     f"axis 1)")
                values = values.reshape((1, -1) + (1,) * (x.ndim - 2))
            op(x, values.astype(dtype), out=x)
        return x

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"Preprocessing({args})"

    def __eq__(self, other):
        return isinstance(other, Preprocessing) and self.to_dict() == other.to_dict()
