"""Shared helpers of the real-data loaders: downloads on request, archives, images to tensors."""

from __future__ import annotations

import os
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

__all__ = ["download", "extract_zip", "image_to_tensor"]


def download(url: str, destination: Path) -> Path:
    """Fetch ``url`` into ``destination`` (through a temporary file, so a failure leaves nothing).

    Args:
        url: where to fetch from.
        destination: the file to write; its folder is created.

    Returns:
        ``destination``.

    Raises:
        RuntimeError: if the download fails; the message says where to put the file by hand.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(destination.name + ".part")
    try:
        with urllib.request.urlopen(url) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(
            f"could not download {url} ({err}); fetch it by hand and save it as {destination}"
        ) from err
    os.replace(tmp, destination)
    return destination


def extract_zip(archive: Path, folder: Path) -> None:
    """Unpack ``archive`` into ``folder``, refusing members that would land outside it."""
    folder = folder.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            target = (folder / member.filename).resolve()
            if folder not in target.parents and target != folder:
                raise RuntimeError(f"{archive} holds a path outside its folder: {member.filename}")
        zf.extractall(folder)


def image_to_tensor(image: Image.Image, size: int | None, mode: str) -> Tensor:
    """A PIL image as a float tensor ``[c, size, size]`` in ``[0, 1]`` (resized when ``size``)."""
    image = image.convert(mode)
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[None]
    else:
        array = array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))
