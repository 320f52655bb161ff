#!/usr/bin/env python3
"""Teach the encoder what the search finds: fine-tune the encoder alone, against the frozen quantizer and decoder,
to output the latents that analysis by synthesis (`neurocodec/search.py`) reaches from its own.

    python tools/devset.py /tmp/dev    # the development speech: a fixed pick of the validation split
    python tools/distill_encoder.py --dev /tmp/dev [--crops 600] [--train-steps 4000] [--out ~/.cache/neurocodec/distill]

1. Targets (cached under OUT/targets-*.safetensors, resumable): random 2 s crops of the training corpus (speech and
   music, every voice), level-normalised as the encoder path does, and the latent the search at the highest
   effort reaches from the encoder's for 8 codebooks (6 kbps): targets near today's latents.
2. Training: Adam on the encoder's weights only, MSE between its latent and the target (the decoder, quantizer
   and entropy tables are not touched: their hash, hence every file, stays the same). `--code-weight W` adds the
   codes the search chose as a classification target (round 2: the MSE of round 1 fell while the codes, which are
   all a file keeps, barely moved): at each residual stage, cross-entropy of the stage's cosine similarities
   (temperature `--temperature`) against the target's code, the residual taken along the target's codes
   (teacher forcing), averaged over the stages. Every `--judge-every` steps
   the encoder is judged on DEV_FOLDER (the validation split, never the evaluation set) through real `.ncd` files at
   6 kbps, effort 0: PESQ-WB, log-mel and real kbps; the best is kept as OUT/best.safetensors, a model checkpoint
   that also decodes the files of the model it started from (`decodes`).

The PESQ of the start is printed first; a run that never beats it keeps no checkpoint.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from neurocodec import search
from neurocodec.audio import list_audio, read_audio, resample
from neurocodec.checkpoint import read_model, resolve_model, save_model
from neurocodec.eval.run import aggregate, collect, evaluate
from neurocodec.loader import LoadedModel, load_model

CORPUS = Path("~/.cache/neurocodec/corpus").expanduser()
SHARD = 50  # crops per target file
N_Q = 8  # the targets are searched for 6 kbps, the default bitrate


def crops(files: list[Path], count: int, seconds: float, sample_rate: int, seed: int) -> list[np.ndarray]:
    """`count` random crops `[T]` at the model's rate, none quieter than -50 dBFS."""
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        audio, sr = read_audio(rng.choice(files))
        audio = resample(audio.mean(0, keepdims=True), sr, sample_rate)[0]
        n = int(seconds * sample_rate)
        if len(audio) < n:
            continue
        start = rng.randrange(len(audio) - n + 1)
        x = audio[start: start + n]
        if 10 * np.log10(np.mean(x ** 2) + 1e-12) > -50:
            out.append(x.astype(np.float32))
    return out


def make_targets(model: LoadedModel, out: Path, count: int, seconds: float, seed: int) -> tuple[torch.Tensor, ...]:
    files = list_audio([CORPUS / "train" / "speech", CORPUS / "train" / "music"])
    codec, level = model.codec, model.level
    finder = search.Search(codec, N_Q, search.EFFORT_STEPS[-1], torch.from_numpy(model.identity.code_prices()))
    audio_parts, target_parts = [], []
    for shard in range(-(-count // SHARD)):
        path = out / f"targets-{shard:03d}.safetensors"
        if not path.exists():
            t0 = time.perf_counter()
            x = torch.from_numpy(level.normalize(np.stack(crops(files, SHARD, seconds, codec.sample_rate,
                                                                seed + shard)))[0])
            with torch.inference_mode():
                latent = codec.encoder(codec._pad(x[:, None]))
            target = torch.cat([finder.optimise(x[i:i + 10], latent[i:i + 10]) for i in range(0, len(x), 10)])
            save_file({"audio": x.contiguous(), "target": target.contiguous()}, str(path))
            print(f"targets {path.name}: {time.perf_counter() - t0:.0f} s", flush=True)
        part = load_file(str(path))
        audio_parts.append(part["audio"])
        target_parts.append(part["target"])
    return torch.cat(audio_parts), torch.cat(target_parts)


def code_terms(quantizer, latent: torch.Tensor, target: torch.Tensor, temperature: float):
    """latent, target `[B, latent_dim, F]` → (mean cross-entropy over the N_Q stages of the latent's similarities
    against the target's greedy codes, with residuals taken along the target's codes; the share of frames whose
    first-stage code equals the target's)."""
    with torch.no_grad():
        codes = quantizer.encode(target, N_Q)  # [B, N_Q, F]
    residual, total, agree = latent, latent.new_zeros(()), 0.0
    for q, vq in enumerate(quantizer.quantizers[:N_Q]):
        logits = vq.similarity(vq.in_proj(residual)) / temperature  # [B, F, K]
        total = total + torch.nn.functional.cross_entropy(logits.flatten(0, 1), codes[:, q].flatten())
        if q == 0:
            agree = (logits.argmax(dim=2) == codes[:, 0]).float().mean().item()
        with torch.no_grad():
            part = vq.decode(codes[:, q])
        residual = residual - part
    return total / N_Q, agree


def judge(model: LoadedModel, items: list) -> dict:
    """PESQ-WB, log-mel and real kbps through real files at 6 kbps, effort 0 (`neurocodec eval`'s own path)."""
    agg = aggregate(evaluate(items, model, (6.0,)))[0]
    return {"pesq": agg["pesq"], "mel": agg["mel_distance"], "kbps": agg["kbps"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="the model whose encoder is fine-tuned (default: the bundled one)")
    ap.add_argument("--dev", required=True, help="development speech from the validation split")
    ap.add_argument("--out", type=Path, default=Path("~/.cache/neurocodec/distill").expanduser())
    ap.add_argument("--crops", type=int, default=600)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--train-steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--judge-every", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--code-weight", type=float, default=0.0, help="weight of the codes' cross-entropy (0: MSE only)")
    ap.add_argument("--temperature", type=float, default=0.1, help="of the cosine similarities in the code term")
    ap.add_argument("--name", default="best", help="keep the best encoder as OUT/NAME.safetensors")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    path = resolve_model(args.model)
    state, info = read_model(path)
    start = load_model(path, device="cpu")
    audio, target = make_targets(start, args.out, args.crops, args.seconds, args.seed)
    refs = collect([args.dev])
    best = first = judge(start, refs)
    print(json.dumps({"step": 0, **best}), flush=True)
    train = LoadedModel.build(state, info, "cpu", inference=False).codec
    train.train()
    train.requires_grad_(False)
    encoder = train.encoder
    encoder.requires_grad_(True)
    opt = torch.optim.Adam(encoder.parameters(), lr=args.lr)
    rng = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    for step in range(1, args.train_steps + 1):
        pick = torch.randint(len(audio), (args.batch,), generator=rng)
        latent = encoder(train._pad(audio[pick][:, None]))
        loss = mse = torch.nn.functional.mse_loss(latent, target[pick])
        agree = float("nan")
        if args.code_weight:
            ce, agree = code_terms(train.quantizer, latent, target[pick], args.temperature)
            loss = mse + args.code_weight * ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.5f} mse {mse.item():.5f} first-stage agreement {agree:.3f} "
                  f"({step / (time.perf_counter() - t0):.2f} steps/s)", flush=True)
        if step % args.judge_every == 0 or step == args.train_steps:
            tuned = {k: v.detach().clone() for k, v in train.state_dict().items()}
            candidate = LoadedModel.build(tuned, info, "cpu")
            score = judge(candidate, refs)
            print(json.dumps({"step": step, **score}), flush=True)
            if score["pesq"] > best["pesq"] and score["kbps"] <= first["kbps"] * 1.01:
                best = score
                out = args.out / f"{args.name}.safetensors"
                save_model(out, tuned, info.config, name=info.name, dtype=torch.float16,
                           extra={**info.extra, "distilled_step": str(step)}, entropy=info.entropy,
                           decodes=tuple(sorted({info.weights_sha256, *info.decodes})))
                kept, kept_info = read_model(out)
                assert kept_info.decoder_sha256 == info.decoder_sha256, "the decoder must not change"
                print(f"kept {out} (decoder {kept_info.decoder_sha256[:12]}, unchanged)", flush=True)


if __name__ == "__main__":
    main()
