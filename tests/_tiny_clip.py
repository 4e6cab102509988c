"""A tiny random open_clip model saved to a temp file, for reward tests that must not download.

`make_tiny_clip(tmp_path)` registers a ViT config small enough to run in milliseconds on the CPU
(width 32, 2 layers, 32x32 images, patch 8; text width 32, 2 layers, the stock 49408-token BPE
vocabulary and 77-token context so open_clip's own tokenizer applies), saves a seeded random state
dict, and returns the `--reward-model` string "ARCH:/path/ckpt" that `findcli.rewards` resolves.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch

TINY_CLIP_NAME = "findtest-tiny-clip"

TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def register_tiny_clip(config_dir: Path) -> str:
    """Write the tiny config as `<config_dir>/<TINY_CLIP_NAME>.json` and add it to open_clip's registry."""
    config_dir = Path(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    config_file = config_dir / f"{TINY_CLIP_NAME}.json"
    config_file.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config_file)
    return TINY_CLIP_NAME


def make_tiny_clip(tmp_path: Path, seed: int = 0) -> str:
    """Build a seeded random tiny CLIP, save its state dict under tmp_path; return "ARCH:/path/ckpt"."""
    name = register_tiny_clip(Path(tmp_path))
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    checkpoint = Path(tmp_path) / "tiny_clip.pt"
    torch.save(model.state_dict(), checkpoint)
    return f"{name}:{checkpoint}"


def make_tiny_pickscore(tmp_path: Path, seed: int = 0) -> tuple[str, str]:
    """A tiny random transformers CLIPModel and CLIPProcessor saved under tmp_path, shaped like PickScore's.

    The tokenizer is byte-level only (512 byte symbols + 2 specials, no merges): enough for BPE to
    tokenise any text. Returns (model_dir, processor_dir) for `findcli.rewards.PickScore`.
    """
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor_dir = Path(tmp_path) / "tiny_pickscore_processor"
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(processor_dir)

    torch.manual_seed(seed)
    text = dict(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
        max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32))
    model_dir = Path(tmp_path) / "tiny_pickscore_model"
    model.save_pretrained(model_dir)
    return str(model_dir), str(processor_dir)
