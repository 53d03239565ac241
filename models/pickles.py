"""Loading pickled checkpoints without running anything in them, and saying why a file was refused.

``torch.load(weights_only=True)`` refuses any pickle that imports something outside its
allow-list. Its message then suggests retrying with ``weights_only=False``, which for a
malicious file is the worst advice, so the refusal is read here instead: a pickle that
parses to the end yet was refused imports code, and is named as such; one that does not
parse is damaged.
"""

from __future__ import annotations

import pickle
import pickletools
import zipfile
from pathlib import Path

import torch

from .errors import WeightsFileError


def load_pickle_safely(path: Path) -> object:
    """``torch.load`` that refuses Python objects, with errors that name the file and the fix."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        imported = imported_names(path)
        if imported is not None:
            names = ", ".join(imported[:4]) or "objects"
            raise WeightsFileError(
                f"{path} was refused: it would run code when loaded (it imports {names}). A CodeFormer "
                "checkpoint holds only tensors: delete this file and download the official one."
            ) from error
        raise corrupt(path, "its pickle data does not parse") from error
    except PermissionError as error:
        raise WeightsFileError(f"{path} cannot be read: permission denied; check the file's permissions") from error
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise corrupt(path, f"{type(error).__name__}: {first_line(error)}") from error
    except (KeyError, IndexError, TypeError, AttributeError) as error:  # torch's unpickler on bytes that are no pickle
        raise corrupt(path, "its bytes are no torch checkpoint") from error


def imported_names(path: Path) -> list[str] | None:
    """The ``module.name`` callables a pickle imports, or None when its bytes do not parse as a pickle.

    A torch zip checkpoint keeps its pickle in ``*/data.pkl``; a legacy one is a pickle itself.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next((name for name in archive.namelist() if name.endswith("data.pkl")), None)
                if member is None:
                    return None
                data = archive.read(member)
        else:
            data = path.read_bytes()
        names, strings = [], []
        for opcode, argument, _ in pickletools.genops(data):
            if isinstance(argument, str):
                strings.append(argument)
            if opcode.name in ("GLOBAL", "INST"):
                names.append(str(argument).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL":
                names.append(".".join(strings[-2:]))
    except (ValueError, zipfile.BadZipFile, OSError, EOFError):
        return None
    return [name for name in names if not name.startswith(("torch.", "collections.OrderedDict"))] or names


def corrupt(path: Path, detail: str) -> WeightsFileError:
    return WeightsFileError(
        f"{path} could not be read as a torch checkpoint ({detail}); it is probably truncated or corrupt: "
        "download it again."
    )


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no detail"
