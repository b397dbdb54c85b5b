"""Phase 3 of the speed benchmark: peak memory of a Multi-Model Sampler run against the members'
weights, and of the stock runs doing the same evaluations."""
from __future__ import annotations

import ctypes
import gc
import logging
import time

from host_setup import Host
from overhead import Bench

log = logging.getLogger("amdm.bench")


class CpuPeak:
    """Peak RSS of a block above the RSS before it (Linux). glibc's mmap threshold is fixed at
    64 KiB first (M_MMAP_THRESHOLD; fixing it also stops its dynamic growth), so every large
    tensor is its own mapping and its pages go back to the OS when freed: RSS then follows the
    live heap instead of keeping earlier peaks. The peak is VmHWM after writing 5 to
    /proc/self/clear_refs (resets it to the current RSS); where that fails, a thread samples RSS."""

    def __init__(self):
        self.method = "VmHWM after clear_refs"
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 64 * 1024)      # M_MMAP_THRESHOLD
            libc.mallopt(-1, 128 * 1024)     # M_TRIM_THRESHOLD
            self._trim = libc.malloc_trim
            self.method += ", glibc mmap threshold 64 KiB"
        except (OSError, AttributeError):
            self._trim = None
            self.method += " (not glibc: earlier peaks may stay resident)"
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._hwm = True
        except OSError:
            self._hwm = False
            self.method = "RSS sampled every 2 ms by a thread (psutil)"

    @staticmethod
    def _status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    def measure(self, fn):
        gc.collect()
        if self._trim is not None:
            self._trim(0)
        before = self._status("VmRSS")
        if self._hwm:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            fn()
            peak = self._status("VmHWM")
        else:
            import threading

            import psutil
            proc, stop, seen = psutil.Process(), threading.Event(), [before]

            def poll():
                while not stop.is_set():
                    seen.append(proc.memory_info().rss)
                    time.sleep(0.002)
            t = threading.Thread(target=poll, daemon=True)
            t.start()
            try:
                fn()
            finally:
                stop.set()
                t.join()
            peak = max(seen)
        return {"before_bytes": before, "working_bytes": max(0, peak - before)}


def _weight_bytes(patchers) -> int:
    return sum(p.model_size() for p in patchers)


class CpuRunPeak(CpuPeak):
    """A run's peak on a CPU: the weights (resident before and after) + the run's peak RSS growth."""

    def measure_run(self, fn, patchers) -> dict:
        m = self.measure(fn)
        weights = _weight_bytes(patchers)
        return {"weights_bytes": weights, "working_bytes": m["working_bytes"],
                "peak_bytes": weights + m["working_bytes"], "rss_before_bytes": m["before_bytes"]}


class CudaRunPeak:
    """A run's peak on a GPU: every model unloaded first, so the weights load inside the run."""
    method = ("torch.cuda.max_memory_allocated of a run started with every model unloaded "
              "(weights load inside the run)")

    def __init__(self, host: Host):
        self.host = host

    def measure_run(self, fn, patchers) -> dict:
        torch, mm = self.host.torch, self.host.mm
        mm.unload_all_models()
        gc.collect()
        mm.soft_empty_cache()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak_b = torch.cuda.max_memory_allocated() - base
        resident = torch.cuda.memory_allocated() - base
        return {"weights_bytes": _weight_bytes(patchers), "peak_bytes": peak_b,
                "working_bytes": max(0, peak_b - resident), "resident_after_bytes": resident}


def memory_row(peak, bench: Bench, k: int, steps: int, window_end: int) -> dict:
    """The MMS with K members, the K separate stock runs, and one stock N-step run of the base."""
    pk = [m.patcher for m in bench.members[:k]]
    v = bench.variants(k, steps, window_end)
    row = {"K": k, "steps": steps, "window_end": window_end,
           "mms": peak.measure_run(v["mms"], pk),
           "stock_separate": peak.measure_run(v["separate"], pk),
           "stock_single_N": peak.measure_run(lambda: bench.stock([(0, steps)]), pk[:1])}
    w = row["mms"]["weights_bytes"]
    row["mms_peak_vs_weights"] = row["mms"]["peak_bytes"] / w if w else None
    row["separate_peak_vs_weights"] = row["stock_separate"]["peak_bytes"] / w if w else None
    log.info("memory K=%d: weights %.1f MB, MMS peak %.1f MB (working %.1f MB), separate peak %.1f MB, "
             "single N-step working %.1f MB", k, w / 1e6, row["mms"]["peak_bytes"] / 1e6,
             row["mms"]["working_bytes"] / 1e6, row["stock_separate"]["peak_bytes"] / 1e6,
             row["stock_single_N"]["working_bytes"] / 1e6)
    return row


def measure_memory(host: Host, bench: Bench, ks, steps, window_end) -> tuple[list, str]:
    """(one memory_row per K, the method's description)."""
    peak = CpuRunPeak() if host.device.type != "cuda" else CudaRunPeak(host)
    return [memory_row(peak, bench, k, steps, window_end) for k in ks], peak.method
