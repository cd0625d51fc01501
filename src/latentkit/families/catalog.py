"""Which models a folder offers (`latentkit serve --models DIR`): the ComfyUI / AUTOMATIC1111
habit of one folder holding every checkpoint, found without loading any of them.

Model folders (latentkit's, diffusers') are named by their directory, single checkpoints by their
file name, as AUTOMATIC1111 lists them. A `.safetensors` file is listed only if its header (read
alone, no tensor) is a checkpoint of a known family, so VAEs, LoRAs and embeddings kept beside
the models are left out; so are unreadable files, each with the reason.
"""

from __future__ import annotations

from pathlib import Path

from latentkit.errors import ModelFileError


def is_model_folder(path: Path) -> bool:
    return (path / "latentkit.json").is_file() or (path / "model_index.json").is_file()


def is_checkpoint(path: Path) -> bool:
    """A single-file checkpoint of a family latentkit knows (header only)."""
    from latentkit.families.memory import read_header
    from latentkit.families.single_file import detect

    try:
        detect(read_header(path), path)
    except ModelFileError:
        return False
    return True


def models_in(folder: str | Path) -> dict[str, Path]:
    """Name -> path of every model directly inside `folder`, sorted by name."""
    root = Path(folder)
    if not root.is_dir():
        raise ModelFileError(f"models folder {root} does not exist or is not a folder")
    return {entry.name: entry for entry in sorted(root.iterdir()) if is_model(entry)}


def is_model(entry: Path) -> bool:
    if entry.is_dir():
        return is_model_folder(entry)
    return entry.suffix.lower() == ".safetensors" and is_checkpoint(entry)


def model_bytes(path: Path) -> int:
    """What a model's weights take on disk: the budget of the server's model cache counts
    this, doubled for fp16 files running in fp32 on a CPU."""
    files = [path] if path.is_file() else list(path.rglob("*.safetensors"))
    return sum(f.stat().st_size for f in files)


def fast_variants(models: dict[str, Path]) -> dict[str, Path]:
    """Id -> folder of the `--fast` variant of every latentkit model here that carries its
    distilled student: a server offers each as a model of its own, so every API that names a
    model (ours, AUTOMATIC1111's checkpoint option, OpenAI's `model`) can ask for it."""
    from latentkit.families.bundle import folder_fast_model_id

    found = {}
    for path in models.values():
        fast_id = folder_fast_model_id(path)
        if fast_id is not None:
            found[fast_id] = path
    return found
