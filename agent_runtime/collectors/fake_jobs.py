"""The jobs on a simulated gpu8 machine: who uses which GPU, when, how hard.

Each machine splits its 8 GPUs between (drawn once from its seeded stream):

* the main training job on GPUs 0..k-1 (k = 4, 5 or 6): its cycle (ramp,
  plateau with checkpoint dips, idle) also drives the host's CPU/disk/net;
* a second, smaller training job on some of the others, with its own cycle
  and a lower plateau, so GPUs of one machine differ;
* on about half the machines, a notebook kernel that holds memory at 0 %
  for hours (what ``centrality gpus --idle`` is for);
* the rest free (0 %, 1 MiB).

A job's processes start with its run (a new pid each run), hold memory while
it runs and end with it. Everything is a pure function of the job and ``now``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

GIB = 1 << 30
MIB = 1 << 20
USERS = ("alice", "bob", "chen", "dmitri", "emma", "farah", "gwen", "hiro", "ines", "jonas")
_TRAIN = ("python -m torch.distributed.run --nproc_per_node {n} train.py --config configs/{model}.yaml",
          "python train.py --model {model} --deepspeed ds_zero3.json",
          "python -m accelerate.commands.launch finetune.py --model {model}")
_MODELS = ("llama-8b", "llama-70b", "mistral-7b", "vit-h14", "whisper-large", "sdxl")
_NOTEBOOK = "python -m ipykernel_launcher -f /run/user/{uid}/jupyter/kernel-{k:04x}.json"


@dataclass(frozen=True, slots=True)
class Job:
    gpus: tuple[int, ...]
    kind: str  # "train" or "hold"
    period: float
    offset: float
    ramp: float
    end: float  # the job runs for [0, end) of each period, then the GPUs are idle
    ckpt_every: float
    ckpt_len: float
    util: float  # plateau utilisation
    mem: float  # bytes per GPU on the plateau
    user: str
    command: str
    pid_base: int

    def phase(self, now: float) -> tuple[str, float]:
        """("ramp", fraction done) | ("train" | "checkpoint" | "hold" | "idle", 1 | 0)."""
        u = (now + self.offset) % self.period
        if u >= self.end:
            return "idle", 0.0
        if self.kind == "hold":
            return "hold", 1.0
        if u < self.ramp:
            return "ramp", u / self.ramp
        v = (u - self.ramp) % self.ckpt_every
        return ("checkpoint" if v > self.ckpt_every - self.ckpt_len else "train"), 1.0

    def pid(self, now: float, rank: int) -> int:
        """The pid of rank ``rank`` in the current run (a new run, new pids)."""
        return self.pid_base + (int((now + self.offset) // self.period) * 16 + rank) % 400_000

    def gpu(self, phase: str, frac: float, noise: float, mem_off: float) -> tuple[float, float]:
        """(util %, memory bytes) of one of its GPUs in ``phase``."""
        if phase == "ramp":
            return self.util * frac + noise, 2.0 * GIB + (self.mem - 2.0 * GIB + mem_off) * frac
        if phase == "train":
            return self.util + noise, self.mem + mem_off
        if phase == "checkpoint":
            return 9.0 + 4.0 * noise, self.mem + mem_off
        if phase == "hold":
            return 0.0, self.mem
        return 0.0, 1.0 * MIB


def make_jobs(rng: random.Random, ngpus: int, main: dict) -> tuple[tuple[Job, ...], tuple[int, ...]]:
    """The jobs of one machine and, per GPU, the index of its job (-1: free).

    ``main`` holds the main job's cycle (period, offset, ramp, end, ckpt_every,
    ckpt_len), drawn earlier by the caller.
    """
    k = rng.choice((4, 5, 6))
    users = rng.sample(USERS, 3)
    model = rng.choice(_MODELS)
    jobs = [Job(tuple(range(k)), "train", util=98.0, mem=70.0 * GIB, user=users[0],
                command=rng.choice(_TRAIN).format(n=k, model=model), pid_base=41000, **main)]
    rest = list(range(k, ngpus))
    hold = rng.random() < 0.5 and len(rest) >= 2
    second = rest[: len(rest) - 1] if hold else rest[: max(1, len(rest) - 1)]
    if second:
        period = rng.uniform(900, 2400)
        jobs.append(Job(tuple(second), "train", period=period, offset=rng.uniform(0, period),
                        ramp=rng.uniform(30, 60), end=period * rng.uniform(0.5, 0.8),
                        ckpt_every=rng.uniform(200, 400), ckpt_len=rng.uniform(10, 20),
                        util=rng.uniform(70, 90), mem=rng.uniform(20, 45) * GIB, user=users[1],
                        command=rng.choice(_TRAIN).format(n=len(second), model=rng.choice(_MODELS)),
                        pid_base=120000))
    if hold:
        period = rng.uniform(4, 6) * 3600
        jobs.append(Job((rest[-1],), "hold", period=period, offset=rng.uniform(0, period), ramp=0.0,
                        end=period * 0.75, ckpt_every=1.0, ckpt_len=0.0, util=0.0,
                        mem=rng.uniform(12, 40) * GIB, user=users[2],
                        command=_NOTEBOOK.format(uid=1000 + USERS.index(users[2]), k=rng.getrandbits(16)),
                        pid_base=230000))
    owner = [-1] * ngpus
    for j, job in enumerate(jobs):
        for g in job.gpus:
            owner[g] = j
    return tuple(jobs), tuple(owner)
