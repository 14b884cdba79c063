"""Accuracy per parameter on small, noisy sensor datasets: ROCKET baseline vs zoo vs DARTS.

For every dataset of ``benchmarks/sensor_datasets.py`` this script
1. writes the dataset (TI folder format) under ``--out``/data,
2. runs the pipeline (``python -m tinyml_modelzoo``, compilation off, float model)
   once per method: zoo models (``CLS_1k_NPU``, ``CLS_4k_NPU``) and DARTS
   (``training.nas_enabled: True``, preset ``s``), with the same seed and split,
3. trains the classical baseline on the *same* split (the lists the pipeline wrote
   to ``<run>/dataset/instances_*_list.txt``): a ROCKET transform (random dilated
   convolution kernels, PPV + max features) and ``RidgeClassifierCV`` on train+val,
4. prints a table and the means and writes ``results.csv`` under ``--out``.

    .venv/bin/pip install scikit-learn          # baseline only
    .venv/bin/python benchmarks/bench_accuracy.py --out /tmp/tinyml_bench
    .venv/bin/python benchmarks/bench_accuracy.py --datasets ecg_beats gestures --quick
    .venv/bin/python benchmarks/bench_accuracy.py --tag tuned --set training.label_smoothing=0.1

``--set`` overrides go to every pipeline run (``SECTION.KEY=VALUE``, as on the CLI);
``--zoo-set`` / ``--darts-set`` only to the zoo or DARTS runs. ``--jobs 2`` runs two
pipeline runs at once, each with ``common.num_threads`` = 1.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import odd_datasets  # noqa: E402
import sensor_datasets  # noqa: E402
import ucr_datasets  # noqa: E402

# suite name -> (dataset specs with .feature_extraction_name, write_dataset(name, root, seed))
SUITES = {"sensor": (sensor_datasets.DATASETS, sensor_datasets.write_dataset),
          "ucr": (ucr_datasets.DATASETS, ucr_datasets.write_dataset),
          "odd": (odd_datasets.DATASETS, odd_datasets.write_dataset)}
DATASETS = {**sensor_datasets.DATASETS, **ucr_datasets.DATASETS, **odd_datasets.DATASETS}


def write_dataset(name: str, root: Path, seed: int) -> Path:
    writer = next(write for specs, write in SUITES.values() if name in specs)
    return writer(name, root, seed)

BASE_CONFIG = """\
common:
  task_type: generic_timeseries_classification
  target_device: F28P55
dataset:
  dataset_name: bench
data_processing_feature_extraction:
  feature_extraction_name: Generic_256Input_RAW_256Feature_1Frame
training:
  enable: True
testing:
  enable: True
compilation:
  enable: False
"""
DARTS_SETTINGS = ["training.nas_enabled=True", "training.nas_model_size=s"]


@dataclass
class Row:
    dataset: str
    method: str
    tag: str
    accuracy: float = float("nan")
    params: int = 0
    npu_ok: str = ""
    seconds: float = 0.0
    status: str = "ok"


# ---------------------------------------------------------------- ROCKET baseline
def rocket_features(x: np.ndarray, num_kernels: int = 2000, seed: int = 0, batch: int = 64) -> np.ndarray:
    """ROCKET transform (Dempster et al. 2020) of ``x`` (N, C, L) -> (N, 2 * num_kernels).

    Kernels: length 7/9/11, N(0,1) weights (mean removed) on a random subset of channels,
    bias U(-1, 1), dilation 2**U(0, log2((L-1)/(len-1))), random 'same' padding; features
    are the proportion of positive values (PPV) and the max. Computed with torch conv1d,
    kernels grouped by (length, dilation, padding).
    """
    import torch
    import torch.nn.functional as F
    rng = np.random.default_rng(seed)
    n, c, length = x.shape
    specs = []
    for _ in range(num_kernels):
        k = int(rng.choice([7, 9, 11]))
        max_exp = np.log2(max(1.0, (length - 1) / (k - 1)))
        d = int(2 ** rng.uniform(0, max_exp))
        pad = ((k - 1) * d) // 2 if rng.random() < 0.5 else 0
        nch = int(2 ** rng.uniform(0, np.log2(c + 1))) if c > 1 else 1
        chans = rng.choice(c, size=min(nch, c), replace=False)
        w = np.zeros((c, k))
        w[chans] = rng.normal(size=(len(chans), k))
        w -= w[chans].mean()
        w[[i for i in range(c) if i not in chans]] = 0
        specs.append((k, d, pad, w, rng.uniform(-1, 1)))
    groups: dict[tuple[int, int, int], list[int]] = {}
    for i, (k, d, pad, _, _) in enumerate(specs):
        groups.setdefault((k, d, pad), []).append(i)
    out = np.zeros((n, 2 * num_kernels), dtype=np.float32)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    with torch.no_grad():
        for (k, d, pad), idx in groups.items():
            if (k - 1) * d + 1 > length + 2 * pad:
                continue
            w = torch.tensor(np.stack([specs[i][3] for i in idx]), dtype=torch.float32)
            b = torch.tensor([specs[i][4] for i in idx], dtype=torch.float32)
            for s in range(0, n, batch):
                y = F.conv1d(xt[s:s + batch], w, b, dilation=d, padding=pad)
                out[s:s + batch, [2 * i for i in idx]] = (y > 0).float().mean(-1).numpy()
                out[s:s + batch, [2 * i + 1 for i in idx]] = y.amax(-1).numpy()
    return out


def rocket_accuracy(data_dir: Path, lists: dict[str, list[str]], seed: int) -> float:
    """Fit ROCKET + RidgeClassifierCV on train+val files, return accuracy on the test files."""
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.preprocessing import StandardScaler

    def load(paths):
        xs, ys = [], []
        for p in paths:
            rel = p if p.startswith("classes/") else f"classes/{p}"
            header = (data_dir / rel).open().readline().strip().split(",")
            keep = [i for i, h in enumerate(header) if "time" not in h.lower()]
            a = np.loadtxt(data_dir / rel, delimiter=",", skiprows=1, ndmin=2)[:, keep]
            xs.append(a.T)
            ys.append(rel.split("/")[1])
        return np.stack(xs).astype(np.float32), np.array(ys)

    x_tr, y_tr = load(lists["train"] + lists["val"])
    x_te, y_te = load(lists["test"])
    mu = x_tr.mean(axis=(0, 2), keepdims=True)       # per-channel standardisation (train statistics)
    sd = x_tr.std(axis=(0, 2), keepdims=True) + 1e-8
    f_tr = rocket_features((x_tr - mu) / sd, seed=seed)
    f_te = rocket_features((x_te - mu) / sd, seed=seed)
    scaler = StandardScaler().fit(f_tr)
    clf = RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)).fit(scaler.transform(f_tr), y_tr)
    return float((clf.predict(scaler.transform(f_te)) == y_te).mean())


def read_split_lists(run_dir: Path) -> dict[str, list[str]] | None:
    lists = {}
    for split in ("train", "val", "test"):
        f = run_dir / "dataset" / f"instances_{split}_list.txt"
        if not f.is_file():
            return None
        lists[split] = [ln.strip() for ln in f.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return lists


def own_split(data_dir: Path, seed: int, factor=(0.6, 0.2, 0.2)) -> dict[str, list[str]]:
    """Fallback stratified split when no pipeline run wrote its lists."""
    lists = {"train": [], "val": [], "test": []}
    for k, cls in enumerate(sorted(p.name for p in (data_dir / "classes").iterdir())):
        files = sorted(f"classes/{cls}/{f.name}" for f in (data_dir / "classes" / cls).glob("*.csv"))
        np.random.default_rng([seed, k]).shuffle(files)
        n_tr, n_va = round(factor[0] * len(files)), round(factor[1] * len(files))
        lists["train"] += files[:n_tr]
        lists["val"] += files[n_tr:n_tr + n_va]
        lists["test"] += files[n_tr + n_va:]
    return lists


# ---------------------------------------------------------------- pipeline runs
def npu_check(run_dir: Path, summary: dict) -> str:
    """Rebuild the trained architecture from its spec and run the F28P55 NPU checker."""
    try:
        from tinyml_modelzoo.devices import get_device
        from tinyml_modelzoo.model_specs import build_from_spec_dict, load_spec_file
        from tinyml_modelzoo.npu.checker import is_npu_valid
        c, length = summary["dataset"]["input_shape"]
        spec = load_spec_file(run_dir / "training" / "model_spec.yaml")
        model = build_from_spec_dict(spec, c, length, len(summary["dataset"]["classes"]))
        return "yes" if is_npu_valid(model, (c, length), get_device("F28P55")) else "NO"
    except Exception as exc:  # report, do not stop the benchmark
        return f"? ({type(exc).__name__})"


def _newest_run_dir(run_dir: Path) -> Path:
    """The pipeline never reuses a run folder: when ``<run_name>`` exists (an earlier,
    e.g. interrupted, run with the same tag) it writes ``<run_name>-2``, ``-3``, ...
    Read the folder this run wrote, not the stale one."""
    candidates = [p for p in run_dir.parent.glob(run_dir.name + "*")
                  if p.name == run_dir.name or p.name[len(run_dir.name):].lstrip("-").isdigit()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else run_dir


def run_pipeline(name: str, method: str, data_dir: Path, out: Path, tag: str, seed: int, overrides: list[str],
                 threads: int, timeout: int) -> tuple[Row, Path]:
    run_name = f"{method}_{tag}"
    sets = [f"common.output_dir={out / 'runs'}", f"common.run_name={run_name}", f"common.seed={seed}",
            f"common.num_threads={threads}", f"dataset.dataset_name={name}",
            f"dataset.input_data_path={data_dir}",
            f"data_processing_feature_extraction.feature_extraction_name={DATASETS[name].feature_extraction_name}",
            "compilation.enable=False", "training.quantization=0"]
    sets += DARTS_SETTINGS if method == "DARTS" else [f"training.model_name={method}"]
    sets += overrides
    base = out / "base_config.yaml"          # only what the bench needs; everything else = pipeline defaults
    if not base.is_file():
        out.mkdir(parents=True, exist_ok=True)
        base.write_text(BASE_CONFIG)
    cmd = [sys.executable, "-m", "tinyml_modelzoo", str(base)]
    for s in sets:
        cmd += ["--set", s]
    run_dir = out / "runs" / name / "run" / run_name
    row = Row(name, method, tag)
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        row.seconds, row.status = time.time() - t0, f"timeout {timeout}s"
        return row, run_dir
    row.seconds = round(time.time() - t0, 1)
    run_dir = _newest_run_dir(run_dir)
    summary_path = run_dir / "summary.json"
    if proc.returncode != 0 or not summary_path.is_file():
        lines = proc.stderr.strip().splitlines() or ["?"]
        msg = next((ln for ln in lines if ln.startswith(("error", "internal error"))), lines[-1])
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "bench_stderr.txt").write_text(proc.stderr)
        row.status = f"exit {proc.returncode}: {msg[:200]}"
        return row, run_dir
    summary = json.loads(summary_path.read_text())
    row.accuracy = float(summary.get("test", {}).get("accuracy", float("nan")))
    row.params = int(summary.get("model", {}).get("params", 0))
    row.npu_ok = npu_check(run_dir, summary)
    return row, run_dir


def bench_dataset(name, args, data_root, methods) -> list[Row]:
    data_dir = write_dataset(name, data_root, args.data_seed)
    rows, first_run = [], None
    for method in methods:
        ov = list(args.set) + (args.darts_set if method == "DARTS" else args.zoo_set)
        row, run_dir = run_pipeline(name, method, data_dir, Path(args.out), args.tag, args.seed, ov,
                                    args.threads, args.timeout)
        print(f"  {name:16} {method:11} acc {row.accuracy:.3f} params {row.params:6d} npu {row.npu_ok:4} "
              f"{row.seconds:6.1f}s {row.status}", flush=True)
        rows.append(row)
        first_run = first_run or (run_dir if read_split_lists(run_dir) else None)
    if not args.no_baseline:
        lists = read_split_lists(first_run) if first_run else own_split(data_dir, args.seed)
        cache = Path(args.out) / f"rocket_{name}_seed{args.seed}_data{args.data_seed}.json"
        if cache.is_file():                      # same data, same split: no need to refit
            row = Row(**json.loads(cache.read_text()))
            row.tag = args.tag
        else:
            t0 = time.time()
            row = Row(name, "ROCKET", args.tag, rocket_accuracy(data_dir, lists, args.seed), 0, "-")
            row.seconds = round(time.time() - t0, 1)
            cache.write_text(json.dumps(asdict(row)))
        print(f"  {name:16} {'ROCKET':11} acc {row.accuracy:.3f} {row.seconds:6.1f}s", flush=True)
        rows.append(row)
    return rows


def print_table(rows: list[Row]) -> None:
    methods = list(dict.fromkeys(r.method for r in rows))
    names = list(dict.fromkeys(r.dataset for r in rows))
    by = {(r.dataset, r.method): r for r in rows}
    head = f"{'dataset':16}" + "".join(f" | {m:>22}" for m in methods)
    print("\n" + head + "\n" + "-" * len(head))
    for n in names:
        cells = []
        for m in methods:
            r = by.get((n, m))
            cells.append(f"{'':>22}" if r is None else f"{r.accuracy:5.3f} {r.params:5d}p {r.seconds:5.0f}s {r.npu_ok[:3]:>3}")
        print(f"{n:16}" + "".join(f" | {c}" for c in cells))
    means = []
    for m in methods:
        rs = [by[(n, m)] for n in names if (n, m) in by]
        acc = np.nanmean([r.accuracy for r in rs]) if rs else float("nan")
        means.append(f"{acc:5.3f} {np.mean([r.params for r in rs]):5.0f}p {np.mean([r.seconds for r in rs]):5.0f}s    ")
    print(f"{'MEAN':16}" + "".join(f" | {c}" for c in means))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="sensor", choices=sorted(SUITES),
                   help="sensor: generated sensor-like data; ucr: seven real UCR/UEA datasets (from the aeon wheel)")
    p.add_argument("--datasets", nargs="+", default=None, choices=list(DATASETS),
                   help="default: every dataset of the suite")
    p.add_argument("--methods", nargs="+", default=["CLS_1k_NPU", "CLS_4k_NPU", "DARTS"])
    p.add_argument("--out", default="/tmp/tinyml_bench")
    p.add_argument("--tag", default="default", help="run-name suffix and the 'tag' column of the CSV")
    p.add_argument("--set", action="append", default=[], help="override for every pipeline run")
    p.add_argument("--zoo-set", action="append", default=[], help="override for zoo runs only")
    p.add_argument("--darts-set", action="append", default=[], help="override for DARTS runs only")
    p.add_argument("--seed", type=int, default=42, help="pipeline seed (split, init, search)")
    p.add_argument("--data-seed", type=int, default=0, help="dataset generation seed")
    p.add_argument("--quick", action="store_true", help="3 datasets, CLS_1k_NPU + DARTS, few epochs")
    p.add_argument("--jobs", type=int, default=1, help="datasets benchmarked at once")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default 2 // jobs)")
    p.add_argument("--timeout", type=int, default=300, help="seconds allowed per pipeline run")
    p.add_argument("--no-baseline", action="store_true")
    args = p.parse_args(argv)
    methods = args.methods
    args.datasets = args.datasets or list(SUITES[args.suite][0])
    if args.quick:
        args.datasets = [d for d in args.datasets if d in ("ecg_beats", "gestures", "sensor_spikes")] or args.datasets[:3]
        methods = ["CLS_1k_NPU", "DARTS"]
        args.set = ["training.training_epochs=20", "training.batch_size=16"] + args.set
        args.darts_set = ["training.nas_epochs=3"] + args.darts_set
    args.threads = args.threads or max(1, 2 // args.jobs)
    out = Path(args.out)
    data_root = out / "data"
    print(f"benchmark tag {args.tag!r}: datasets {args.datasets}, methods {methods}, overrides {args.set}")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda n: bench_dataset(n, args, data_root, methods), args.datasets))
    rows = [r for rs in results for r in rs]
    print_table(rows)
    csv_path = out / "results.csv"
    new = not csv_path.is_file()
    out.mkdir(parents=True, exist_ok=True)
    with csv_path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(rows[0])) + ["overrides"])
        if new:
            w.writeheader()
        for r in rows:
            w.writerow(dict(asdict(r), overrides=" ".join(args.set + (args.darts_set if r.method == "DARTS" else args.zoo_set))))
    print(f"\nresults appended to {csv_path}")


if __name__ == "__main__":
    main()
