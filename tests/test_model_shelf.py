"""A models folder (`serve --models DIR`): what it offers, found from headers alone, and the
memory-bounded cache that loads each model on first use."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from latentkit.errors import InvalidArgument, ModelFileError
from latentkit.families.catalog import model_bytes, models_in
from latentkit.server.models import ModelShelf


def test_a_models_folder_lists_models_and_leaves_out_parts(tmp_path: Path) -> None:
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "latentkit.json").write_text("{}")
    (tmp_path / "sdxl-folder").mkdir()
    (tmp_path / "sdxl-folder" / "model_index.json").write_text("{}")
    (tmp_path / "notes").mkdir()
    sd = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 4, 3, 3)}
    save_file(sd, str(tmp_path / "dreamy.safetensors"))
    save_file(
        {"lora_unet_down.lora_up.weight": torch.zeros(2, 2)}, str(tmp_path / "style.safetensors")
    )
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00")
    (tmp_path / "old.ckpt").write_bytes(b"pickle")
    found = models_in(tmp_path)
    assert list(found) == ["dreamy.safetensors", "ours", "sdxl-folder"]
    assert (
        model_bytes(found["dreamy.safetensors"]) == (tmp_path / "dreamy.safetensors").stat().st_size
    )
    with pytest.raises(ModelFileError, match="does not exist"):
        models_in(tmp_path / "nope")


def shelf(budget: int) -> tuple[ModelShelf, list[str]]:
    loads: list[str] = []

    def load(path: Path, fast: bool) -> SimpleNamespace:
        loads.append(path.name)
        return SimpleNamespace(model_id=path.name)

    offered = {name: Path(name) for name in ("a", "b", "c")}
    default = SimpleNamespace(model_id="default")
    return ModelShelf(default, offered, load, budget, size_of=lambda _: 60), loads


def test_models_load_on_first_use_and_stay() -> None:
    models, loads = shelf(budget=1000)
    assert models.get(None).model_id == "default" and models.get("default").model_id == "default"
    assert models.get("a").model_id == "a" and models.get("a").model_id == "a"
    assert loads == ["a"] and models.names() == ["default", "a", "b", "c"]


def test_the_least_recently_used_model_leaves_when_over_budget() -> None:
    models, loads = shelf(budget=130)  # room for two models of 60
    models.get("a"), models.get("b"), models.get("a"), models.get("c")
    assert models.resident() == ["default", "a", "c"]  # b was used least recently
    models.get("b")
    assert loads == ["a", "b", "c", "b"] and models.resident() == ["default", "c", "b"]


def test_an_unknown_model_is_refused_naming_those_offered() -> None:
    models, _ = shelf(budget=1000)
    with pytest.raises(InvalidArgument, match=r"unknown model 'x'.*default, a, b, c"):
        models.get("x")


@pytest.fixture(scope="module")
def two_model_app(pipe, tmp_path_factory: pytest.TempPathFactory):
    from fastapi.testclient import TestClient

    from latentkit.families.bundle import save_bundle
    from latentkit.server import create_app
    from tests.conftest import tiny_bundle

    folder = tmp_path_factory.mktemp("models")
    save_bundle(tiny_bundle(seed=5), folder / "other")
    app = create_app(pipe=pipe, outputs=tmp_path_factory.mktemp("out"), models=folder)
    with TestClient(app) as client:
        yield client


def test_requests_name_a_model_from_the_folder(two_model_app, pipe) -> None:
    client = two_model_app
    listed = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert listed == [pipe.model_id, "other"]
    body = {"prompt": "a cat", "seed": 3, "steps": 2, "width": 16, "height": 16}
    default = client.post("/api/generate?wait=true", json=body).json()["result"]["images"][0]
    other = client.post("/api/generate?wait=true", json={**body, "model": "other"})
    assert other.status_code == 200, other.text
    made_with = other.json()["result"]["images"][0]["recipe"]["model"]
    assert made_with != default["recipe"]["model"] == pipe.model_id
    missing = client.post("/api/generate?wait=true", json={**body, "model": "sdxl"})
    assert missing.status_code == 400 and "offers: " in missing.json()["error"]
    assert missing.json()["field"] == "model"


def test_automatic1111_clients_switch_the_checkpoint(two_model_app, pipe) -> None:
    client = two_model_app
    titles = [m["title"] for m in client.get("/sdapi/v1/sd-models").json()]
    assert titles == [pipe.model_id, "other"]
    body = {"prompt": "a cat", "seed": 3, "steps": 2, "width": 16, "height": 16}
    before = json_info(client.post("/sdapi/v1/txt2img", json=body).json())
    assert (
        client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "other"}).status_code == 200
    )
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "other"
    after = json_info(client.post("/sdapi/v1/txt2img", json=body).json())
    assert before["sd_model_name"] == pipe.model_id != after["sd_model_name"]
    client.post("/sdapi/v1/options", json={"sd_model_checkpoint": pipe.model_id})
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == pipe.model_id


def json_info(answer: dict) -> dict:
    import json

    return json.loads(answer["info"])
