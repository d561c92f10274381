"""Fast, clear failures when the Hugging Face hub cannot be reached (instead of minutes of retries)."""
from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from .errors import LoraNbError


def hub_offline_requested() -> bool:
    """True when the user asked the Hugging Face libraries to stay offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("HF_DATASETS_OFFLINE", ""))
    return any(f.strip().lower() in ("1", "true", "yes", "on") for f in flags)


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the hub endpoint (HF_ENDPOINT), so that an offline machine is detected in seconds."""
    if hub_offline_requested():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def load_from_hub(loader, name: str, *, what: str, fix: str, **kwargs):
    """Call a `from_pretrained`-style loader: local cache first, then the hub if reachable, else a LoraNbError."""
    try:
        return loader(name, local_files_only=True, **kwargs)
    except Exception:  # not in the local cache: go on to the hub
        pass
    if not hub_reachable():
        raise LoraNbError(f"Cannot load {what} {name!r}: the Hugging Face hub is not reachable from this machine "
                          f"and it is not in the local cache. Fix: {fix}")
    try:
        return loader(name, **kwargs)
    except OSError as e:
        raise LoraNbError(f"Cannot load {what} {name!r} from the hub ({e}). Fix: {fix}") from None
