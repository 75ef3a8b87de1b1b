"""How much the farm's path costs on top of a plain diffusers call, on the tiny model.

Measures, in one run and on the same inputs:
  1. vanilla diffusers: StableDiffusionPipeline called once per image (the baseline);
  2. the farm's engine (RenderEngine.txt2img);
  3. the full embedded farm path: job submitted, queued, leased by an in-process worker,
     rendered, PNG + thumbnail stored, rows written;
  4. the `farm render` command end to end, cold (fresh FARM_HOME) and warm (second run).
Prints seconds per image and each figure's ratio to the baseline. Each measurement runs in a
fresh Python process: torch's thread pools from one measurement would otherwise slow the next
(the in-process worker runs torch on its own thread).

    python bench/render_path.py [--images 4] [--steps 20] [--size 256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline  # noqa: E402

from farm.context import FarmContext, prepare_database  # noqa: E402
from farm.jobs.dispatch import submit_prompt  # noqa: E402
from farm.jobs.queries import job_progress  # noqa: E402
from farm.queue.worker import in_process_worker  # noqa: E402
from farm.render.engine import ModelSource, RenderEngine  # noqa: E402
from farm.render.params import Txt2ImgParams  # noqa: E402
from farm.render.tiny_model import TINY_MODEL_NAME, ensure_tiny_model  # noqa: E402
from farm.settings import load_settings  # noqa: E402

PROMPT = "a lighthouse at dusk"


def vanilla_diffusers(model_dir: Path, images: int, steps: int, size: int) -> float:
    pipeline = StableDiffusionPipeline.from_pretrained(
        model_dir, local_files_only=True, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipeline.scheduler = EulerAncestralDiscreteScheduler.from_config(pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    pipeline(PROMPT, num_inference_steps=steps, width=size, height=size)  # warm-up
    start = time.perf_counter()
    for i in range(images):
        pipeline(PROMPT, num_inference_steps=steps, width=size, height=size,
                 generator=torch.Generator().manual_seed(1 + i))
    return (time.perf_counter() - start) / images


def farm_engine(model_dir: Path, images: int, steps: int, size: int) -> float:
    engine = RenderEngine()
    model = ModelSource(TINY_MODEL_NAME, model_dir, "sd1", "bench")
    params = Txt2ImgParams(prompt=PROMPT, negative_prompt="", seed=1, steps=steps, cfg_scale=7,
                           width=size, height=size, sampler="Euler a")
    engine.txt2img(model, params)  # warm-up
    start = time.perf_counter()
    engine.txt2img(model, params, batch_count=images)
    return (time.perf_counter() - start) / images


def farm_path(home: Path, images: int, steps: int, size: int) -> float:
    ctx = FarmContext(load_settings({"FARM_HOME": str(home)}))
    prepare_database(ctx)
    with in_process_worker(ctx.celery):
        def run(count: int) -> None:
            job_id = submit_prompt(ctx, prompt=PROMPT, seed=1, count=count,
                                   params={"steps": steps, "width": size, "height": size})
            while not job_progress(ctx.session_factory, job_id).finished:
                time.sleep(0.02)
        run(1)  # warm-up: model load
        start = time.perf_counter()
        run(images)
        return (time.perf_counter() - start) / images


def farm_cli(home: Path, images: int, steps: int, size: int) -> float:
    command = [sys.executable, "-m", "farm.cli", "render", PROMPT, "-n", str(images), "--steps", str(steps),
               "--size", f"{size}x{size}", "--seed", "1", "--out", str(home / "out")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")} | {"FARM_HOME": str(home)}
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


MEASUREMENTS = {
    "vanilla": ("vanilla diffusers, one call per image (baseline)", vanilla_diffusers),
    "engine": ("farm engine (RenderEngine.txt2img)", farm_engine),
    "path": ("farm path: queue, lease, render, store, rows", farm_path),
}


def measure_in_fresh_process(name: str, folder: Path, args) -> float:
    command = [sys.executable, __file__, "--only", name, "--folder", str(folder),
               "--images", str(args.images), "--steps", str(args.steps), "--size", str(args.size)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--only", choices=MEASUREMENTS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = (args.images, args.steps, args.size)
    if args.only:
        print(MEASUREMENTS[args.only][1](args.folder, *shape))
        return
    work = Path(tempfile.mkdtemp(prefix="farm-bench-"))
    try:
        model_dir = ensure_tiny_model(work / "models" / TINY_MODEL_NAME)
        print(f"tiny-sd, {args.size}x{args.size}, {args.steps} steps, Euler a, {args.images} images, "
              f"torch {torch.__version__} on {'cuda' if torch.cuda.is_available() else 'cpu'} "
              f"({os.cpu_count()} cores)")
        home = work / "path"
        shutil.copytree(model_dir, home / "models" / TINY_MODEL_NAME)
        folders = {"vanilla": model_dir, "engine": model_dir, "path": home}
        rows = [(MEASUREMENTS[name][0], measure_in_fresh_process(name, folder, args))
                for name, folder in folders.items()]
        baseline = rows[0][1]
        for label, seconds in rows:
            print(f"  {label:<52} {seconds:7.3f} s/image  {1 / seconds:6.2f} images/s  "
                  f"x{seconds / baseline:.2f} of baseline time")
        cold = farm_cli(work / "cli", *shape)
        warm = farm_cli(work / "cli", *shape)
        print(f"  `farm render -n {args.images}` whole command, cold (new FARM_HOME): {cold:6.1f} s")
        print(f"  `farm render -n {args.images}` whole command, warm:                  {warm:6.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
