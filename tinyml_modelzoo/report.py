"""The short final report printed to the terminal (and run.log) at the end of a run."""
from __future__ import annotations

import logging

log = logging.getLogger("tinyml_modelzoo")


def print_report(summary: dict) -> None:
    lines = ["", "=" * 60, f"run finished: {summary.get('status')}  ->  {summary.get('run_dir')}"]
    model = summary.get("model") or {}
    if model:
        lines.append(f"model      {model.get('name')} ({model.get('source')}): "
                     f"{model.get('params', '?')} params, {model.get('macs', '?')} MACs")
    nas = summary.get("nas")
    if nas:
        lines.append(f"NAS        {nas.get('mode')}: {nas.get('search_seconds')} s")
    test = summary.get("test")
    if test:
        text = f"test       accuracy {test.get('accuracy', float('nan')):.4f}  macro-F1 {test.get('f1', float('nan')):.4f}"
        if "accuracy_int8" in test:
            text += f"  int8 accuracy {test['accuracy_int8']:.4f}"
        lines.append(text)
    comp = summary.get("compilation")
    if comp:
        lines.append(f"device     NPU-compatible {comp.get('npu_compatible')}, flash {comp.get('flash_bytes')} B, "
                     f"RAM {comp.get('ram_bytes')} B, ~{comp.get('latency_us_estimate')} us, "
                     f"host check {comp.get('host_check')}")
    timings = summary.get("timings") or {}
    if timings:
        lines.append("time       " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    lines.append("=" * 60)
    log.info("\n".join(lines))
