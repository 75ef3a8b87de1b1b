"""GPU checks of the worker path, for a machine with CUDA (CI has none; run it by hand).

1. `farm worker --gpus all` on the embedded farm (SQLite, embedded broker, local storage):
   one child per GPU registers with its GPU name and memory, renders a job on CUDA, reports
   its warm model; a child killed with SIGKILL is restarted by the supervisor and registers
   again; SIGTERM stops the supervisor cleanly.
2. CUDA out of memory: the SD 1.5 architecture (random weights, configs/random-sd15) asked for
   64 images at 1024x1024 in one batch, with this process held to a quarter of the card (as on
   a 20 GB card; the caching allocator then raises CUDA's own OutOfMemoryError): the engine
   halves the batch until it fits and remembers the size that fits.
3. A first look at throughput (issue 8 does this properly): SD 1.5 512x512, 25 steps DPM++ 2M,
   CFG 7.5, fp16: vanilla diffusers beside the farm's engine, batch 1 and batch 8.

Prints figures as it goes and writes them as JSON to --out.

    python bench/gpu_worker_check.py --out results.json [--skip-worker] [--skip-oom] [--skip-speed]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from tests.fixtures.processes import wait_until  # noqa: E402  (after sys.path has the repo)

results: dict = {}
MEMORY_FRACTION = 0.25


def say(message: str) -> None:
    print(message, flush=True)


def farm(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "farm.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def workers(env: dict) -> list[dict]:
    listed = farm("workers", "--json", env=env)
    return json.loads(listed.stdout) if listed.returncode == 0 else []


def job(env: dict, job_id: str) -> dict:
    return json.loads(farm("jobs", "show", job_id, "--json", env=env).stdout)


def check_worker_supervisor(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(FARM_HOME=str(home), FARM_HEARTBEAT_SECONDS="1", PYTHONUNBUFFERED="1")
    upgraded = farm("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    log_path = home / "supervisor.log"
    with open(log_path, "w") as log:
        supervisor = subprocess.Popen([sys.executable, "-m", "farm.cli", "worker", "--gpus", "all"], env=env,
                                      stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        first = wait_until(lambda: [w for w in workers(env) if w["status"] == "online"], 120, "a GPU worker to register")
        say(f"registered: {[(w['name'], w['gpu_index'], w['gpu_name'], w['vram_total_bytes']) for w in first]}")
        results["workers"] = first
        assert all(w["gpu_name"] and w["vram_total_bytes"] for w in first), first

        started = time.monotonic()
        submitted = farm("render", "a lighthouse at dusk", "-n", "8", "--steps", "20", "--size", "512x512",
                         "--seed", "1", "--detach", env=env)
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        done = wait_until(lambda: (j := job(env, job_id))["status"] in ("succeeded", "failed") and j, 300,
                        "the job to finish")
        say(f"job {job_id}: {done['status']} in {time.monotonic() - started:.1f} s; rendered by "
            f"{sorted({r['rendered_by'] for r in done['renders']})}")
        assert done["status"] == "succeeded", done
        time.sleep(2)  # one heartbeat, which reports warm models and GPU memory
        after = workers(env)
        say(f"after the job: {[(w['name'], w['warm_models'], w['vram_used_bytes']) for w in after]}")
        results["after_job"] = after

        name = first[0]["name"]
        started_at = next(w["started_at"] for w in after if w["name"] == name)
        child = subprocess.run(["pgrep", "-f", "farm.cli worker --gpu 0"], capture_output=True, text=True)
        pids = [int(p) for p in child.stdout.split()]
        say(f"killing worker child(ren) {pids} with SIGKILL")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        again = wait_until(lambda: [w for w in workers(env) if w["name"] == name and w["status"] == "online"
                                  and w["started_at"] != started_at], 120, "the supervisor to restart the worker")
        say(f"restarted and registered again: {again[0]['name']} started_at {again[0]['started_at']}")
        results["restarted"] = True
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            code = supervisor.wait(timeout=60)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            code = "killed after 60 s"
        say(f"supervisor exit status after SIGTERM: {code}")
        results["supervisor_exit"] = code
        say("supervisor log (tail):\n" + log_path.read_text()[-3000:])
    say(f"after stop: {[(w['name'], w['status']) for w in workers(env)]}")


def random_sd15(folder: Path) -> Path:
    from farm.render.tiny_model import ensure_random_model

    started = time.monotonic()
    path = ensure_random_model(folder / "random-sd15", REPO / "configs" / "random-sd15")
    say(f"random SD 1.5 built in {time.monotonic() - started:.0f} s")
    return path


def check_out_of_memory(model_path: Path) -> None:
    import torch

    from farm.render.engine import ModelSource, RenderEngine
    from farm.render.params import Txt2ImgParams

    torch.cuda.set_per_process_memory_fraction(MEMORY_FRACTION)
    engine = RenderEngine(device="cuda", max_batch_size=64)
    model = ModelSource(name="random-sd15", path=model_path, architecture="sd1", sha256="0" * 64)
    params = Txt2ImgParams(prompt="a lighthouse", negative_prompt="", seed=1, steps=2, cfg_scale=7.5,
                           width=1024, height=1024, sampler="Euler")
    torch.cuda.reset_peak_memory_stats()
    started = time.monotonic()
    images = engine.txt2img(model, params, batch_count=64)
    loaded = next(iter(engine._pipelines.values()))
    figures = {"images": len(images), "seconds": round(time.monotonic() - started, 1),
               "learned_batch_limits": {f"{w}x{h}": b for (w, h), b in loaded.batch_limits.items()},
               "low_memory": loaded.low_memory, "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
               "memory_limit_gib": round(torch.cuda.get_device_properties(0).total_memory * MEMORY_FRACTION / 2**30, 1)}
    say(f"out of memory check: {figures}")
    results["out_of_memory"] = figures
    assert len(images) == 64 and loaded.batch_limits, "the batch never had to shrink: ask for a bigger one"
    engine.unload_all()
    torch.cuda.set_per_process_memory_fraction(1.0)


def check_speed(model_path: Path) -> None:
    import diffusers
    import torch

    from farm.render.engine import ModelSource, RenderEngine
    from farm.render.params import Txt2ImgParams

    prompt = "a lighthouse at dusk, oil painting"
    speed = {}

    def timed(run, images: int, repeats: int = 2) -> float:
        run()  # warm-up
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(repeats):
            run()
        torch.cuda.synchronize()
        return images * repeats / (time.perf_counter() - started)

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(model_path, torch_dtype=torch.float16,
                                                             safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = diffusers.DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to("cuda")
    for batch in (1, 8):
        speed[f"vanilla fp16 batch {batch}"] = timed(
            lambda: pipe(prompt, num_inference_steps=25, guidance_scale=7.5, num_images_per_prompt=batch), batch)
    del pipe
    torch.cuda.empty_cache()

    model = ModelSource(name="random-sd15", path=model_path, architecture="sd1", sha256="0" * 64)
    params = Txt2ImgParams(prompt=prompt, negative_prompt="", seed=1, steps=25, cfg_scale=7.5, width=512,
                           height=512, sampler="DPM++ 2M")
    for batch in (1, 8):
        engine = RenderEngine(device="cuda", max_batch_size=batch)
        speed[f"farm engine fp16 batch {batch}"] = timed(lambda: engine.txt2img(model, params, batch_count=batch),
                                                         batch)
        engine.unload_all()
    for name, images_per_second in speed.items():
        say(f"{name:<28} {images_per_second:6.2f} images/s")
    results["speed_sd15_512_25steps_images_per_s"] = {k: round(v, 2) for k, v in speed.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--skip-worker", action="store_true")
    parser.add_argument("--skip-oom", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    import torch

    results["device"] = torch.cuda.get_device_name(0)
    results["torch"] = torch.__version__
    say(f"device: {results['device']}, torch {results['torch']}")
    work = Path(tempfile.mkdtemp(prefix="farm-gpu-check-"))
    try:
        if not args.skip_worker:
            check_worker_supervisor(work / "home")
        if not (args.skip_oom and args.skip_speed):
            model_path = random_sd15(work)
            if not args.skip_oom:
                check_out_of_memory(model_path)
            if not args.skip_speed:
                check_speed(model_path)
    finally:
        if args.out:
            args.out.write_text(json.dumps(results, indent=2, default=str))
    say("all GPU checks passed")


if __name__ == "__main__":
    main()
