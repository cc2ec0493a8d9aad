"""Jobs spread over worker processes, their results streamed back as they come: what parallel collection
(data/collect.py) and parallel evaluation (evaluate.py) share.

`work(job)` is a generator at module level (the workers import it by name); each worker process takes the
next job from a queue, runs `work` on it and sends every item it yields to this process, which handles them
as they arrive (one writer, memory flat). The processes are started fresh ("spawn"): no MuJoCo, EGL or torch
state is forked. An exception in a worker ends the run here with that exception; a worker that dies without
one (killed, out of memory) ends it with a WorkerError. Either way the other workers are stopped, and what
arrived before is kept by whoever handled it.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import threading
import traceback
from typing import Callable, Iterable, Iterator

from tqdm import tqdm

from minivla_core.errors import MiniVLAError


class WorkerError(MiniVLAError):
    """A worker process died, or failed with an exception that could not be sent back as it was."""


def run_in_workers(work: Callable, jobs: list, workers: int) -> Iterator[tuple[int, object]]:
    """(job number, item) for every item `work(job)` yields, from `workers` processes, in the order they arrive."""
    context = multiprocessing.get_context("spawn")
    todo, done = context.Queue(), context.Queue(maxsize=4 * workers)  # bounded: a slow reader holds the workers
    for number, job in enumerate(jobs):
        todo.put((number, job))
    processes = [context.Process(target=worker_main, args=(work, todo, done), daemon=True)
                 for _ in range(min(workers, len(jobs)))]
    for process in processes:
        todo.put(None)  # one stop sign each
        process.start()
    finished = 0
    try:
        while finished < len(jobs):
            try:
                kind, number, payload = done.get(timeout=2.0)
            except queue.Empty:
                dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
                if dead:
                    raise WorkerError(f"a worker process died (exit code {dead[0]}) before finishing its job; "
                                      f"what arrived before was kept") from None
                continue
            if kind == "error":
                raise payload
            if kind == "finished":
                finished += 1
            else:
                yield number, payload
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(timeout=10)
        for channel in (todo, done):
            channel.close()
            channel.join_thread()


def worker_main(work: Callable[[object], Iterable], todo, done) -> None:
    """One worker process: run jobs until the stop sign, sending each item, then "finished" (or the error)."""
    tqdm.set_lock(threading.RLock())  # progress bars: no process-shared lock (the parent would report it leaked)
    while (next_job := todo.get()) is not None:
        number, job = next_job
        try:
            for item in work(job):
                done.put(("item", number, item))
        except Exception as exc:  # noqa: BLE001 - sent to the parent, which raises it
            done.put(("error", number, sendable(exc)))
            return
        done.put(("finished", number, None))


def sendable(exc: Exception) -> Exception:
    """`exc` if it survives pickling (our errors do), else a WorkerError holding its traceback."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any failure to pickle or unpickle
        return WorkerError(f"a worker failed:\n{''.join(traceback.format_exception(exc))}")
