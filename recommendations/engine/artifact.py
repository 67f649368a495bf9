"""A trained model on disk: factors, biases, global mean and id maps.

The file is an .npz read with allow_pickle=False, so loading it can never
run code, whoever wrote it. It is written under a temporary name and
renamed into place, so a reader never sees half a file.
"""

import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


class ArtifactError(Exception):
    """The artifact is missing, damaged or from an incompatible version."""


@dataclass
class ModelArtifact:
    user_ids: np.ndarray
    item_ids: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    user_bias: np.ndarray
    item_bias: np.ndarray
    global_mean: float
    item_popularity: np.ndarray
    rating_scale: tuple = (1.0, 5.0)
    # Optional named arrays (content vectors, neighbours...), saved as-is.
    extras: dict = field(default_factory=dict)

    @property
    def n_factors(self):
        return self.item_factors.shape[1]

    def check(self):
        """Raise ArtifactError unless every array has a consistent shape."""
        n_users, n_items = len(self.user_ids), len(self.item_ids)
        expected = {
            "user_factors": (n_users, self.n_factors),
            "user_bias": (n_users,),
            "item_bias": (n_items,),
            "item_popularity": (n_items,),
        }
        for name, shape in expected.items():
            actual = getattr(self, name).shape
            if actual != shape:
                raise ArtifactError(f"{name} has shape {actual}, expected {shape}")
        if self.item_factors.shape[0] != n_items:
            raise ArtifactError("item_factors and item_ids disagree on the item count")


_CORE = (
    "user_ids",
    "item_ids",
    "user_factors",
    "item_factors",
    "user_bias",
    "item_bias",
    "item_popularity",
)


def save_artifact(artifact, path):
    """Write the artifact atomically: a temporary file, then a rename."""
    artifact.check()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    arrays = {name: getattr(artifact, name) for name in _CORE}
    arrays["user_ids"] = np.asarray(artifact.user_ids, dtype=str)
    arrays["item_ids"] = np.asarray(artifact.item_ids, dtype=str)
    arrays["global_mean"] = np.float64(artifact.global_mean)
    arrays["rating_scale"] = np.asarray(artifact.rating_scale, dtype=np.float64)
    arrays["format_version"] = np.int64(FORMAT_VERSION)
    arrays.update({f"extra__{k}": v for k, v in artifact.extras.items()})

    fd, tmp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as tmp:
            np.savez(tmp, **arrays)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_artifact(path):
    """Read an artifact, or raise ArtifactError saying what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise ArtifactError(f"model file {path} does not exist") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"model file {path} is unreadable: {exc}") from None

    version = arrays.get("format_version")
    if version is None or int(version) != FORMAT_VERSION:
        raise ArtifactError(
            f"model file {path} has format {version}, "
            f"this server reads {FORMAT_VERSION}"
        )

    try:
        artifact = ModelArtifact(
            **{name: arrays[name] for name in _CORE},
            global_mean=float(arrays["global_mean"]),
            rating_scale=tuple(float(x) for x in arrays["rating_scale"]),
            extras={
                k.removeprefix("extra__"): v
                for k, v in arrays.items()
                if k.startswith("extra__")
            },
        )
    except KeyError as exc:
        raise ArtifactError(f"model file {path} lacks the array {exc}") from None
    artifact.check()
    return artifact
