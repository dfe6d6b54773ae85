"""Datasets larger than memory: `ganzoo prepare` throughput and peak memory on a folder of
generated JPEGs, streaming throughput from the prepared `.npy` files with a cold and a warm page
cache, and `prepare` + `train` under a memory limit several times smaller than the decoded data.

    nice -n 10 .venv/bin/python -m benchmarks.data_scale prepare --images 20000 --size 64
    nice -n 10 .venv/bin/python -m benchmarks.data_scale stream --size 64
    nice -n 10 .venv/bin/python -m benchmarks.data_scale limit --images 32000 --size 256 --limit-gib 1.5

- The folder: `--images` JPEGs (quality 90) of mixed sizes (`--min-side`..`--max-side` on each
  side, so `prepare` centre-crops and resizes every one), smooth random colour fields with grain;
  generated once into `--work` and reused.
- `prepare`: `ganzoo prepare` (data.source=folder) in a child process; images/s over its wall
  time, its peak RSS from the kernel (wait4's ru_maxrss), the decoded size of the dataset.
- `stream`: the training sampler for stored datasets (`StreamBatches`, CPU, `--batch`,
  prefetch 4) reading the prepared arrays: images/s over `--steps` batches after evicting the
  arrays from the page cache (`posix_fadvise(DONTNEED)`: cold) and again right after (warm);
  a batch is read by positioned reads and scaled to [-1, 1] float (on the CPU, the scaling is
  most of the cost), so this is the rate the sampler can feed a training step.
- `limit`: `ganzoo prepare`, then `ganzoo train` (dcgan, streaming, `--train-steps`), each in a
  child under `RLIMIT_DATA` = `--limit-gib` (what `prlimit --data=` sets: the heap and every
  private writable mapping, i.e. the memory a process allocates; the page cache and read-only
  file maps are not charged). A control child that loads one array whole (`np.load`) under the same
  limit must fail, or the limit proves nothing. `ulimit -v` (address space) is not used: a
  CUDA-enabled torch maps ~3.7 GB of libraries at import, more than the limits worth showing.
Results go to `--out` (JSON, one section per command) and a markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks import common

GIB = 2 ** 30


# --------------------------------------------------------------------------- the generated folder

def _one_jpeg(args: tuple[Path, int, int, int]) -> None:
    from PIL import Image

    path, seed, lo, hi = args
    if path.exists():
        return
    rng = np.random.default_rng(seed)
    w, h = (int(v) for v in rng.integers(lo, hi + 1, 2))
    field = rng.integers(0, 256, (h // 24 + 2, w // 24 + 2, 3), dtype=np.uint8)
    im = np.asarray(Image.fromarray(field).resize((w, h), Image.Resampling.BILINEAR), dtype=np.int16)
    im = np.clip(im + rng.integers(-12, 13, im.shape), 0, 255).astype(np.uint8)
    tmp = path.with_suffix(".tmp")
    Image.fromarray(im).save(tmp, format="JPEG", quality=90)
    os.replace(tmp, path)


def make_folder(folder: Path, n: int, lo: int, hi: int) -> Path:
    """n JPEGs named by index (existing ones are kept: the folder is deterministic)."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"{i:06d}.jpg", i, lo, hi) for i in range(n)]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # PIL encodes without the GIL
        list(pool.map(_one_jpeg, jobs))
    return folder


# --------------------------------------------------------------------------- child processes

def run_child(cmd: list[str], cwd: Path, limit_bytes: int | None = None) -> dict:
    """Run cmd; its wall time, exit code, peak RSS (MiB, from the kernel) and last output lines."""
    def limit() -> None:
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=limit, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "wall_s": time.perf_counter() - start, "peak_rss_mib": usage.ru_maxrss / 1024,
            "tail": out.strip().splitlines()[-3:], "command": " ".join(cmd)}


def ganzoo(*args: str) -> list[str]:
    return [sys.executable, "-m", "ganzoo", *args]


def data_sets(folder: Path, size: int, work: Path) -> list[str]:
    return ["--set", "data.source=folder", "--set", f"data.root={folder}", "--set", f"data.image_size={size}",
            "--set", f"data.prepared_dir={work / 'prepared'}", "--set", "tracking.enabled=false"]


def store_of(work: Path, size: int) -> Path:
    return work / "prepared" / f"folder-{size}"


def decoded_gib(store: Path) -> float:
    m = json.loads((store / "manifest.json").read_text())
    return sum(int(np.prod(a["shape"])) * np.dtype(a["dtype"]).itemsize for a in m["arrays"].values()) / GIB


# --------------------------------------------------------------------------- commands

def cmd_prepare(args) -> dict:
    folder = make_folder(args.work / f"jpegs-{args.images}", args.images, args.min_side, args.max_side)
    r = run_child(ganzoo("prepare", *data_sets(folder, args.size, args.work)), args.work)
    r.update(images=args.images, size=args.size, images_per_s=args.images / r["wall_s"],
             decoded_gib=decoded_gib(store_of(args.work, args.size)) if r["rc"] == 0 else None)
    print(f"| prepare | {args.images:,} JPEGs {args.min_side}-{args.max_side} px -> {args.size} px | "
          f"{r['images_per_s']:,.0f} images/s | peak RSS {r['peak_rss_mib']:,.0f} MiB | "
          f"decoded {r['decoded_gib'] or 0:.2f} GiB | rc {r['rc']} |")
    return r


def evict(paths: list[Path]) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cmd_stream(args) -> dict:
    import torch

    from ganzoo.data.prepared import load_prepared
    from ganzoo.data.stream import StreamBatches

    torch.set_num_threads(args.threads)
    store = store_of(args.work, args.size)
    prep = load_prepared(store)
    files = [f.path for f in (prep.files or {}).values()]
    out = {"store": str(store), "decoded_gib": decoded_gib(store), "batch": args.batch, "steps": args.steps}
    for label in ("cold", "warm"):
        if label == "cold":
            evict(files)
        batches = StreamBatches(prep, args.batch, torch.device("cpu"), seed=0, prefetch=4)
        start = time.perf_counter()
        for _ in range(args.steps):
            batches.next()
        out[f"{label}_images_per_s"] = args.steps * args.batch / (time.perf_counter() - start)
    print(f"| stream | {out['decoded_gib']:.2f} GiB store, batch {args.batch} | cold {out['cold_images_per_s']:,.0f} "
          f"images/s | warm {out['warm_images_per_s']:,.0f} images/s |")
    return out


def cmd_limit(args) -> dict:
    limit = int(args.limit_gib * GIB)
    folder = make_folder(args.work / f"jpegs-{args.images}", args.images, args.min_side, args.max_side)
    sets = data_sets(folder, args.size, args.work)
    out: dict = {"limit_gib": args.limit_gib, "rlimit": "RLIMIT_DATA (prlimit --data)"}
    out["prepare"] = run_child(ganzoo("prepare", *sets), args.work, limit)
    store = store_of(args.work, args.size)
    out["decoded_gib"] = decoded_gib(store) if out["prepare"]["rc"] == 0 else None
    train = ["--set", "variant=dcgan", "--set", "model.dcgan.ngf=8", "--set", "model.dcgan.ndf=8",
             "--set", f"train.steps={args.train_steps}", "--set", "train.batch_size=16", "--set", "train.device=cpu",
             "--set", "train.progress=false", "--set", f"train.log_every={args.train_steps}",
             "--set", f"train.checkpoint_every={args.train_steps}", "--set", f"train.out_dir={args.work / 'ck'}",
             "--set", f"train.metrics_dir={args.work / 'metrics'}"]
    out["train"] = run_child(ganzoo("train", "--no-track", *sets, *train), args.work, limit)
    probe = ("import sys, torch; from ganzoo.data.prepared import load_prepared; from ganzoo.data.stream import "
             f"should_stream; print('streams' if should_stream(load_prepared({str(store)!r}), torch.device('cpu')) "
             "else 'in memory')")
    out["sampler"] = run_child([sys.executable, "-c", probe], args.work, limit)["tail"]
    control = f"import numpy as np; np.load({str(store / 'x.npy')!r}).sum()"
    out["control_whole_array"] = run_child([sys.executable, "-c", control], args.work, limit)
    rows = [("prepare", out["prepare"]), ("train", out["train"]),
            ("control: np.load(x.npy)", out["control_whole_array"])]
    for name, r in rows:
        print(f"| {name} | limit {args.limit_gib} GiB, data {out['decoded_gib'] or 0:.2f} GiB | rc {r['rc']} | "
              f"peak RSS {r['peak_rss_mib']:,.0f} MiB | {r['wall_s']:.0f} s |")
    print(f"sampler under the limit: {out['sampler']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["prepare", "stream", "limit"])
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--min-side", type=int, default=160)
    ap.add_argument("--max-side", type=int, default=640)
    ap.add_argument("--size", type=int, default=64, help="data.image_size")
    ap.add_argument("--batch", type=int, default=64, help="stream: batch size")
    ap.add_argument("--steps", type=int, default=300, help="stream: batches timed")
    ap.add_argument("--threads", type=int, default=1, help="stream: torch threads (1: fastest on a shared machine)")
    ap.add_argument("--limit-gib", type=float, default=1.5, help="limit: RLIMIT_DATA of the children")
    ap.add_argument("--train-steps", type=int, default=30, help="limit: steps of the streamed training run")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ganzoo-data-scale"), help="folders and prepared data")
    ap.add_argument("--out", type=Path, default=common.OUT / "data_scale.json")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    result = {"prepare": cmd_prepare, "stream": cmd_stream, "limit": cmd_limit}[args.command](args)
    result["machine"] = common.machine(__import__("torch").device("cpu"))
    existing = json.loads(args.out.read_text()) if args.out.exists() else {}
    existing[f"{args.command}-{args.size}"] = result
    common.write_json(args.out, existing)
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
