#!/usr/bin/env python3
"""Build the training and evaluation corpus from Debian packages (no installation of the games).

    python tools/build_corpus.py [--out ~/.cache/neurocodec/corpus] [--jobs 2]

Steps: `apt-get download` each package, `dpkg-deb -x` it, decode its audio (soundfile; ffmpeg for G.722;
fluidsynth for MIDI; `music.pk3` unzipped), resample with soxr to 24 kHz mono, write FLAC under
OUT/{train,valid,eval}/{speech,music}/PACKAGE/..., and write OUT/manifest.jsonl (package, version, file,
duration, SHA-256, split, licence). The evaluation segments (~10 s, fixed seed) are listed in the committed
`tools/eval_segments.json`; this script writes them as OUT/eval/{speech,music}/*.flac. `--pick-eval` re-picks
them (only when the eval set is meant to change).

Requires: apt-get, dpkg-deb, ffmpeg, fluidsynth, fluid-soundfont-gm, unzip (`apt-get install ffmpeg fluidsynth
fluid-soundfont-gm unzip`).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 24000
HERE = Path(__file__).resolve().parent
SEGMENTS = HERE / "eval_segments.json"
FILLETS_HELD_OUT = ("library", "cellar", "turtle", "reef")  # level folders never trained on

# package: (kind, split, licence, file patterns)
PACKAGES = {
    "fillets-ng-data-cs": ("speech", "train", "GPL-2+", ("*.ogg",)),
    "asterisk-core-sounds-en-g722": ("speech", "train", "CC-BY-SA-3.0", ("*.g722",)),
    "asterisk-core-sounds-es-g722": ("speech", "train", "CC-BY-SA-3.0", ("*.g722",)),
    "asterisk-core-sounds-fr-g722": ("speech", "train", "CC-BY-SA-3.0", ("*.g722",)),
    "klettres-data": ("speech", "train", "GPL-2+", ("*.ogg",)),
    "ktuberling-data": ("speech", "train", "GPL-2+", ("*.ogg",)),
    "wesnoth-1.16-music": ("music", "train", "GPL-2+", ("*.ogg",)),
    "nexuiz-music": ("music", "train", "GPL-2+", ("*.pk3",)),
    "openttd-openmsx": ("music", "train", "GPL-2", ("*.mid",)),
    "asterisk-core-sounds-it-g722": ("speech", "eval", "CC-BY-SA-3.0", ("*.g722",)),
    "pocketsphinx-testdata": ("speech", "eval", "public domain (LibriVox); package BSD-2", ("librivox/*.wav",)),
    "colobot-common-sounds": ("music", "eval", "GPL-3+", ("music/*.ogg",)),
}
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


def fetch(pkg: str, cache: Path) -> tuple[Path, str]:
    """Download and unpack one package; returns (root, version)."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{pkg}_*.deb"))
    if not found:
        run(["apt-get", "download", pkg], cwd=debs)
        found = sorted(debs.glob(f"{pkg}_*.deb"))
    deb = found[-1]
    version = run(["dpkg-deb", "-f", str(deb), "Version"], text=True).stdout.strip()
    root = cache / "extract" / pkg
    if not root.exists():
        tmp = root.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        run(["dpkg-deb", "-x", str(deb), str(tmp)])
        tmp.rename(root)
    return root, version


def decode(path: Path) -> tuple[np.ndarray, int]:
    """Any source file → (mono float32 [T], rate)."""
    if path.suffix == ".g722":
        out = run(["ffmpeg", "-v", "error", "-f", "g722", "-i", str(path), "-f", "f32le", "-ac", "1", "-"]).stdout
        return np.frombuffer(out, np.float32).copy(), 16000
    if path.suffix == ".mid":
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "x.wav"
            run(["fluidsynth", "-ni", "-g", "0.6", "-r", "44100", "-F", str(wav), str(SOUNDFONT), str(path)])
            audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    else:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
    return audio.mean(axis=1), sr


def sources(pkg: str, root: Path, patterns: tuple[str, ...], work: Path) -> list[Path]:
    files: list[Path] = []
    for pattern in patterns:
        files += sorted(p for p in root.rglob(pattern.split("/")[-1]) if pattern.count("/") == 0 or p.parent.name == pattern.split("/")[0])
    if pkg == "nexuiz-music":  # the music lives inside a zip archive
        unpacked = work / "nexuiz-music"
        if not unpacked.exists():
            with zipfile.ZipFile(files[0]) as z:
                z.extractall(unpacked)
        files = sorted(unpacked.rglob("*.ogg"))
    return files


def convert(job: tuple[str, Path, Path, str, str, str, Path]) -> dict | None:
    pkg, src, rel, kind, split, licence, out = job
    try:
        audio, sr = decode(src)
    except (subprocess.CalledProcessError, sf.LibsndfileError, RuntimeError) as exc:
        return {"package": pkg, "file": str(rel), "error": str(exc).splitlines()[0][:200]}
    if len(audio) < sr * 0.25:
        return None
    audio = soxr.resample(audio, sr, SR, quality="HQ").astype(np.float32)
    peak = float(np.abs(audio).max())
    if peak > 0.999:  # resampling can overshoot; keep the file valid PCM
        audio *= 0.999 / peak
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out, audio, SR, subtype="PCM_16")
    return {
        "package": pkg,
        "file": str(rel),
        "path": str(out),
        "kind": kind,
        "split": split,
        "licence": licence,
        "duration": round(len(audio) / SR, 3),
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
    }


def _rms_db(pieces: list[dict]) -> float:
    audio = np.concatenate([sf.read(p["path"], dtype="float32")[0] for p in pieces])
    return float(10 * np.log10(np.mean(audio.astype(np.float64) ** 2) + 1e-20))


def pick_eval(entries: list[dict], seed: int = 0) -> list[dict]:
    """~10 s evaluation segments: consecutive short speech clips joined; 10 s crops of music tracks."""
    rng = random.Random(seed)
    segments = []
    by_group: dict[str, list[dict]] = {}
    for e in entries:
        if e["split"] != "eval":
            continue
        group = e["package"] if e["kind"] == "music" else f"{e['package']}:{Path(e['file']).parent}"
        by_group.setdefault(group, []).append(e)
    for group, items in sorted(by_group.items()):
        items.sort(key=lambda e: e["file"])
        if items[0]["kind"] == "music":
            for e in rng.sample(items, min(8, len(items))):
                if e["duration"] < 12:
                    continue
                for _ in range(10):  # a crop of a pause or fade says nothing about a codec
                    start = rng.uniform(0, e["duration"] - 10)
                    with sf.SoundFile(e["path"]) as f:
                        f.seek(int(start * SR))
                        crop = f.read(10 * SR, dtype="float32")
                    if np.sqrt(np.mean(crop.astype(np.float64) ** 2)) > 10 ** (-40 / 20):
                        segments.append({"kind": "music", "pieces": [{"package": e["package"], "file": e["file"],
                                                                      "start": round(start, 3), "duration": 10.0}]})
                        break
            continue
        if Path(items[0]["file"]).parent.name == "silence":  # asterisk's silence prompts: nothing to judge
            continue
        n_segments = 4
        starts = rng.sample(range(len(items)), min(n_segments * 3, len(items)))
        made = 0
        for s in starts:
            pieces, total = [], 0.0
            for e in items[s:]:
                if total >= 9.0:
                    break
                pieces.append({"package": e["package"], "file": e["file"], "start": 0.0, "duration": e["duration"],
                               "path": e["path"]})
                total += e["duration"]
            if total >= 5.0 and _rms_db(pieces) > -40:
                segments.append({"kind": "speech", "pieces": pieces})
                made += 1
            if made == n_segments:
                break
    for i, seg in enumerate(segments):
        seg["id"] = f"{seg['kind']}-{i:03d}"
        for piece in seg["pieces"]:
            piece.pop("path", None)  # machine-specific; the manifest maps (package, file) to a path
    return segments


def write_eval(segments: list[dict], entries: list[dict], out: Path) -> list[dict]:
    path_of = {(e["package"], e["file"]): Path(e["path"]) for e in entries if "path" in e}
    written = []
    for seg in segments:
        parts = []
        for piece in seg["pieces"]:
            src = path_of[(piece["package"], piece["file"])]
            with sf.SoundFile(src) as f:
                f.seek(int(piece["start"] * SR))
                parts.append(f.read(int(piece["duration"] * SR), dtype="float32"))
            parts.append(np.zeros(int(0.25 * SR), np.float32))  # a short pause between joined clips
        audio = np.concatenate(parts[:-1]) if len(seg["pieces"]) > 1 else parts[0]
        dest = out / "eval" / seg["kind"] / f"{seg['id']}.flac"
        dest.parent.mkdir(parents=True, exist_ok=True)
        sf.write(dest, audio, SR, subtype="PCM_16")
        written.append({"id": seg["id"], "kind": seg["kind"], "path": str(dest), "duration": round(len(audio) / SR, 3)})
    return written


def write_eval_set(entries: list[dict], out: Path, pick: bool) -> int:
    if pick or not SEGMENTS.exists():
        SEGMENTS.write_text(json.dumps(pick_eval(entries), indent=1) + "\n")
    segments = json.loads(SEGMENTS.read_text())
    shutil.rmtree(out / "eval", ignore_errors=True)
    written = write_eval(segments, entries, out)
    (out / "eval" / "manifest.json").write_text(json.dumps(written, indent=1) + "\n")
    print(f"eval segments: {len(written)} ({sum(w['duration'] for w in written) / 60:.1f} min)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("~/.cache/neurocodec/corpus").expanduser())
    ap.add_argument("--cache", type=Path, default=Path("~/.cache/neurocodec").expanduser())
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--packages", nargs="*", default=list(PACKAGES))
    ap.add_argument("--pick-eval", action="store_true", help="re-pick the evaluation segments (changes the eval set)")
    ap.add_argument("--eval-only", action="store_true", help="only (re)write the eval set from an existing manifest")
    args = ap.parse_args()
    for tool in ("apt-get", "dpkg-deb", "ffmpeg", "fluidsynth"):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found; install with: apt-get install ffmpeg fluidsynth fluid-soundfont-gm", file=sys.stderr)
            return 1
    out = args.out
    jobs = []
    versions = {}
    for pkg in args.packages:
        kind, split, licence, patterns = PACKAGES[pkg]
        root, versions[pkg] = fetch(pkg, args.cache)
        for src in sources(pkg, root, patterns, args.cache / "extract"):
            rel = src.relative_to(root) if src.is_relative_to(root) else src.relative_to(args.cache / "extract")
            file_split = split
            if pkg == "fillets-ng-data-cs" and rel.parts[-3] in FILLETS_HELD_OUT:
                file_split = "eval"
            dest = out / ("train" if file_split == "train" else "eval-sources") / kind / pkg / rel.with_suffix(".flac")
            jobs.append((pkg, src, rel, kind, file_split, licence, dest))
    if args.eval_only:
        entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        return write_eval_set(entries, out, args.pick_eval)
    print(f"converting {len(jobs)} files from {len(args.packages)} packages …", flush=True)
    entries = []
    with cf.ProcessPoolExecutor(args.jobs) as pool:
        for i, entry in enumerate(pool.map(convert, jobs, chunksize=8)):
            if entry:
                entry["version"] = versions[entry["package"]]
                entries.append(entry)
            if i % 500 == 0:
                print(f"  {i}/{len(jobs)}", flush=True)
    errors = [e for e in entries if "error" in e]
    entries = [e for e in entries if "error" not in e]
    # A small validation split of the training material: every 50th file, kept out of the training folder.
    for i, e in enumerate(sorted((e for e in entries if e["split"] == "train"), key=lambda e: e["path"])):
        if i % 50 == 0:
            dest = out / "valid" / Path(e["path"]).relative_to(out / "train")
            dest.parent.mkdir(parents=True, exist_ok=True)
            Path(e["path"]).replace(dest)
            e["path"], e["split"] = str(dest), "valid"
    with open(out / "manifest.jsonl", "w") as f:
        for e in sorted(entries, key=lambda e: e["path"]):
            f.write(json.dumps(e) + "\n")
    write_eval_set(entries, out, args.pick_eval)
    minutes: dict[str, float] = {}
    for e in entries:
        key = f"{e['split']}/{e['kind']}"
        minutes[key] = minutes.get(key, 0) + e["duration"] / 60
    for key, m in sorted(minutes.items()):
        print(f"{key:>16}: {m:7.1f} min")
    print(f"errors: {len(errors)}")
    for e in errors[:5]:
        print("  skipped:", e["package"], e["file"], e["error"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
