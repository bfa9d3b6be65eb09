#!/usr/bin/env python3
"""Image encoding: vellum's CLIP image side vs transformers' CLIPModel on CPU, same random
ViT-B/32-sized checkpoint, same images, same thread count, batch 32, in one run.

Usage: python3 benches/compare/compare_clip.py [--images 128] [--threads 2] [--batch 32] [--rounds 3]

No real CLIP checkpoint is reachable offline: the script makes a random `CLIPModel` with
OpenAI ViT-B/32's vision tower (224 px, patch 32, width 768, 12 layers, 12 heads, MLP 3072,
quick-GELU, projection 512) and a small text tower, saved under
benches/compare/data/clip_vitb32_random/ with CLIP's image processor settings. Images: the
photographs scikit-image ships (tools/fetch-skimage-photos.sh), cycled to --images.
Times, per round (alternating order, fresh processes):
  * transformers: `model.get_image_features(pixel_values)` per batch, pixel values prepared by
    CLIPImageProcessor beforehand (its PIL preprocessing timed separately), torch threads = --threads;
  * vellum: `Encoder::encode_prepared` per batch (benches/compare/clip_timing.rs), images decoded
    and preprocessed beforehand (timed separately).
Reports images/s (median over rounds) and the ratio, and checks the embeddings agree (cosine of
the first image's embedding >= 0.9999 — same model, same pixels up to JPEG decoding).
Needs: torch (CPU), transformers 5, Pillow, numpy.
"""
import argparse, json, os, statistics, subprocess, sys, time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--images", type=int, default=128)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
args = ap.parse_args()
root = Path(__file__).resolve().parents[2]
data = root / "benches/compare/data"
model_dir = data / "clip_vitb32_random"
photos = root / "tests/data/skimage"
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu  # noqa: E402

cpu.setup_peer_env()


def image_list():
    names = sorted((photos / "images").iterdir())
    return [str(names[i % len(names)]) for i in range(args.images)]


def transformers_worker():
    import numpy as np
    import torch
    from PIL import Image, ImageOps
    from transformers import CLIPImageProcessor, CLIPModel
    torch.set_num_threads(args.threads)
    model = CLIPModel.from_pretrained(model_dir).eval()
    proc = CLIPImageProcessor.from_pretrained(model_dir)
    t = time.perf_counter()
    images = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in image_list()]
    pv = proc(images=images, return_tensors="pt")["pixel_values"]
    prepare_s = time.perf_counter() - t
    with torch.inference_mode():
        model.get_image_features(pixel_values=pv[: args.batch])  # warm-up
        best, first = float("inf"), None
        for _ in range(3):
            t = time.perf_counter()
            outs = []
            for i in range(0, len(pv), args.batch):
                o = model.get_image_features(pixel_values=pv[i:i + args.batch])
                outs.append(o if isinstance(o, torch.Tensor) else o.pooler_output)
            best = min(best, time.perf_counter() - t)
            e = torch.cat(outs)
            first = torch.nn.functional.normalize(e, dim=-1)[0].tolist()
    print(json.dumps({"images": len(pv), "prepare_s": prepare_s, "encode_s": best, "first": first}))


if args.worker == "transformers":
    transformers_worker()
    sys.exit(0)

print(cpu.describe())
subprocess.run(["bash", str(root / "tools/fetch-skimage-photos.sh")], check=True)
if not (model_dir / "model.safetensors").exists():
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel
    torch.manual_seed(0)
    tiny = root / "tests/fixtures/clip/tiny"
    text = json.loads((tiny / "config.json").read_text())["text_config"]
    cfg = CLIPConfig(
        text_config=dict(vocab_size=text["vocab_size"], hidden_size=64, intermediate_size=128,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                         bos_token_id=text["bos_token_id"], eos_token_id=text["eos_token_id"],
                         pad_token_id=text["pad_token_id"]),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                           num_attention_heads=12, image_size=224, patch_size=32),
        projection_dim=512)
    CLIPModel(cfg).eval().save_pretrained(model_dir)
    CLIPImageProcessor().save_pretrained(model_dir)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (model_dir / f).write_bytes((tiny / f).read_bytes())
(data / "clip_images.txt").write_text("\n".join(image_list()) + "\n")
env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
subprocess.run(["cargo", "bench", "-q", "--features", "encoders", "--bench", "compare_clip_timing",
                "--no-run"], cwd=root, check=True)
bench = max((p for p in (root / "target/release/deps").glob("compare_clip_timing-*")
             if os.access(p, os.X_OK) and p.suffix == ""), key=lambda p: p.stat().st_mtime)
runs = {"vellum": [], "transformers": []}
outs = {}
for r in range(args.rounds):
    for who in (["vellum", "transformers"] if r % 2 == 0 else ["transformers", "vellum"]):
        if who == "vellum":
            cmd = [str(bench), "--model", str(model_dir), "--images", str(data / "clip_images.txt"),
                   "--batch", str(args.batch)]
        else:
            cmd = [sys.executable, __file__, "--worker", "transformers", "--images", str(args.images),
                   "--threads", str(args.threads), "--batch", str(args.batch)]
        out = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        runs[who].append(out)
        outs[who] = out
import numpy as np  # noqa: E402
a, b = np.array(outs["vellum"]["first"]), np.array(outs["transformers"]["first"])
cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
med = {w: statistics.median(o["images"] / o["encode_s"] for o in runs[w]) for w in runs}
prep = {w: statistics.median(o["images"] / o["prepare_s"] for o in runs[w]) for w in runs}
print(f"images: {args.images} (batch {args.batch}, {args.threads} threads), ViT-B/32 random weights")
print("| | vellum | transformers | vellum / transformers |")
print("|---|---:|---:|---:|")
print(f"| forward, images/s | {med['vellum']:.1f} | {med['transformers']:.1f} | **{med['vellum'] / med['transformers']:.2f}×** |")
print(f"| decode + preprocess, images/s | {prep['vellum']:.1f} | {prep['transformers']:.1f} | {prep['vellum'] / prep['transformers']:.2f}× |")
print(f"first image's embedding: cosine {cos:.6f}")
assert cos >= 0.9999, "the two did not compute the same embedding"
