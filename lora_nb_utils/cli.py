"""The `lora-nb` command: count-params, train (one run), run (a grid), results. Errors a user can fix print one
line, no traceback."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path

import yaml

from .runs import rundir
from .config import RunConfig
from .errors import LoraNbError, LoraNbWarning


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes print one line that names the problem and where to look (--help), like every other error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _add_run_options(parser: argparse.ArgumentParser, only=None) -> None:
    """One --option per RunConfig field (lora_r -> --lora-r), typed from the field's annotation."""
    for f in dataclasses.fields(RunConfig):
        if only and f.name not in only:
            continue
        kind = str(f.type)
        conv = _parse_bool if "bool" in kind else float if "float" in kind else int if "int" in kind else str
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=conv, default=None,
                            help=f"(default: {f.default!r})")


def _read_params_file(path) -> dict:
    """A papermill-style YAML parameter file: a mapping of parameter names to values."""
    if not Path(path).is_file():
        raise LoraNbError(f"params file {str(path)!r} does not exist or is not a file. Fix: give a YAML file such as "
                          "params/roberta-base/sst2.yaml.")
    try:
        params = yaml.safe_load(Path(path).read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise LoraNbError(f"{path}: not valid YAML ({str(e).splitlines()[0]}). Fix the file's syntax.") from None
    if not isinstance(params, dict):
        raise LoraNbError(f"{path}: a params file maps parameter names to values (name: value per line), not a "
                          f"{type(params).__name__}.")
    return params


def _config_from_args(args, names) -> RunConfig:
    params = {}
    if getattr(args, "params_file", None):
        params.update(_read_params_file(args.params_file))
    params.update({n: getattr(args, n) for n in names if getattr(args, n, None) is not None})
    return RunConfig.from_params(params, source=getattr(args, "params_file", None) or "command line")


def cmd_count_params(args) -> int:
    from .experiment import count_parameters_for
    cfg = _config_from_args(args, ["lora_r", "lora_targets", "method", "task"])
    cfg.model = args.model
    counts = count_parameters_for(cfg)
    if args.json:
        print(json.dumps(counts))
    else:
        for k, v in counts.items():
            print(f"{k:>16}: {v:,}")
        print("(LoRA count = layers x targets x r x (d_in + d_out). The paper's '4.7M' for DeBERTa XXL is r=16, "
              "the official script's value; r=8 gives 2.4M.)")
    return 0


def cmd_train(args) -> int:
    from .experiment import run_experiment
    cfg = _config_from_args(args, [f.name for f in dataclasses.fields(RunConfig)])
    metrics = run_experiment(cfg, replace=args.force)
    print(json.dumps({k: metrics[k] for k in ("status", "task", "model", "method", "best_epoch", "best")}, indent=1))
    print(f"run directory: {cfg.output_dir}")
    return 0 if metrics["status"] == rundir.Status.OK else 1


SLURM_FLAGS = ("partition", "account", "qos", "time_limit", "gpus_per_run", "cpus_per_run", "mem_gb",
               "array_parallelism", "log_dir")


def _slurm_options(args):
    """The SLURM options (--slurm-config, then the flags) for --executor slurm; None for local, where they are
    refused."""
    given = [f for f in SLURM_FLAGS if getattr(args, f) is not None] + (["slurm_config"] if args.slurm_config else [])
    if args.executor == "local":
        if given:
            raise LoraNbError(f"--{given[0].replace('_', '-')} is an option of --executor slurm. Fix: add "
                              "--executor slurm, or drop it.")
        return None
    if args.workers is not None:
        raise LoraNbError("--workers is for --executor local: on SLURM each run is a job (--array-parallelism "
                          "caps how many run at once).")
    from .runs.slurm import SlurmOptions
    options = SlurmOptions.load(args.slurm_config, **{f: getattr(args, f) for f in SLURM_FLAGS})
    if args.runs_per_gpu > 1 and options.gpus_per_run > 1:
        raise LoraNbError(f"--runs-per-gpu {args.runs_per_gpu} packs runs on one GPU; --gpus-per-run is "
                          f"{options.gpus_per_run}. Fix: --gpus-per-run 1 (or --runs-per-gpu 1).")
    return options


def cmd_run(args) -> int:
    from .runs.grid import load_plan, resolve_selections
    from .runs.runner import available_gpus, pending_runs, run_plan
    from .runs.selection import selection_lines
    if (args.workers is not None and args.workers < 1) or (args.timeout is not None and not args.timeout > 0) \
            or args.runs_per_gpu < 1:
        raise LoraNbError(f"--workers must be >= 1, --runs-per-gpu >= 1 and --timeout > 0 seconds (got "
                          f"{args.workers}, {args.runs_per_gpu}, {args.timeout}).")
    slurm = _slurm_options(args)
    plan = load_plan(args.grid)
    rundir.check_output_dir(plan.output_root)
    if args.dry_run:
        resolve_selections(plan)
        todo = {r.name for r in pending_runs(plan, args.force)}
        print(f"{plan.grid_file}: {plan.description}".strip())
        notebooks = list(dict.fromkeys(r.notebook.name for r in plan.runs))
        print(f"notebook{'s' * (len(notebooks) > 1)} {', '.join(notebooks)}, output {plan.output_root}")
        for r in plan.runs:
            dep = f"  (after {r.depends_on})" if r.depends_on else ""
            print(f"  {'run ' if r.name in todo else 'done'}  {r.name}{dep}")
        waits = sum(len(s.confirm_params) for s in plan.selections if s.chosen is None)
        print(f"{len(plan.runs)} runs planned: {len(todo)} to run, {len(plan.runs) - len(todo)} finished"
              + (f", {waits} confirm runs after their selection" if waits else ""))
        for line in selection_lines(plan):
            print(line)
        from .bench.costmodel import estimate_plan_hours, measured_pace
        est = estimate_plan_hours(plan)
        bound = " at most (every run to its max epochs; early stopping ends runs sooner)" if est["early_stopping"] \
            else ""
        print(f"estimated training time: {est['total_hours']:,.1f} {est['device']}-hours{bound}, "
              f"{est['todo_hours']:,.1f} of them still to run ({'; '.join(est['bases'])})")
        pace = measured_pace(est)
        if pace is not None and est["todo_hours"] > 0:
            workers = args.workers or 1
            print(f"at the pace of its {pace['runs']} finished run(s) (x{pace['pace']:.2f} the estimate's time per "
                  f"epoch; they ran {pace['epoch_fraction']:.0%} of their max epochs, median), the runs still to run "
                  f"need about {pace['todo_hours_expected']:,.1f} run-hours ({pace['todo_hours_at_cap']:,.1f} at "
                  f"their max epochs): at least {pace['todo_hours_expected'] / workers:,.1f} hours of wall time with "
                  f"--workers {workers}")
        if slurm is not None:
            from .runs.slurm import describe
            for line in describe(plan, pending_runs(plan, args.force), slurm, args.runs_per_gpu, waits):
                print(line)
        return 0
    if slurm is not None:
        from .runs.slurm import SlurmExecutor
        executor = SlurmExecutor(slurm, timeout=args.timeout, runs_per_gpu=args.runs_per_gpu)
        outcomes = run_plan(plan, force=args.force, timeout=args.timeout, executor=executor)
    else:
        workers = args.workers or 1
        gpus = available_gpus() if workers > 1 or args.runs_per_gpu > 1 else []
        if args.runs_per_gpu > 1 and not gpus:
            raise LoraNbError("--runs-per-gpu packs runs on the GPUs and no CUDA GPU is visible. Fix: --workers N "
                              "on a CPU.")
        if args.runs_per_gpu > 1 and args.workers is None:
            workers = len(gpus) * args.runs_per_gpu
        outcomes = run_plan(plan, workers=workers, force=args.force, timeout=args.timeout, gpus=gpus,
                            runs_per_gpu=args.runs_per_gpu)
    failed = [o for o in outcomes if o["status"] in rundir.NO_RESULT]
    report = report_error = None
    if args.report:  # the HTML report of the grid's folder (no PDF), then the summary below ends the output
        from .report.export import build_report
        try:
            report = build_report(plan.output_root, args.report, pdf=False)["html"]
        except LoraNbError as e:
            report_error = e
    from .runs.results import grid_summary
    print(f"done: {len(outcomes) - len(failed)} finished, {len(failed)} failed; "
          f"results table: {plan.output_root / 'results.csv'}")
    print("\n" + grid_summary(plan.output_root, [r.run_dir for r in plan.runs]))
    if report_error is not None:
        raise report_error
    if report is not None:
        print(f"\nreport: {report}")
    return 1 if failed else 0


def cmd_results(args) -> int:
    from .runs.results import collect_results, write_results_table
    if not Path(args.root).is_dir():
        raise LoraNbError(f"{args.root!r} is not a folder of run directories. Fix: give a grid's output folder, "
                          "e.g. runs/demo.")
    table = collect_results(args.root, strict=True)  # a truncated record fails here, naming it, before any write
    path = write_results_table(args.root)
    cols = [c for c in ("model", "task", "method", "lora_r", "seed", "status", "score", "best_epoch") if c in table]
    print(table[cols].to_string(index=False) if len(table) else "no runs yet")
    print(f"written: {path}")
    return 0


def cmd_export(args) -> int:
    from .adapters import export_run
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise LoraNbError(f"{args.out!r} is a file. Fix: give a folder for the PEFT adapter (created if missing).")
    report = export_run(args.run_dir, args.out)
    print(f"wrote PEFT adapter {report['out_dir']}: {', '.join(report['files'])}")
    for k in ("peft_type", "tensors", "r", "lora_alpha", "target_modules", "modules_to_save",
              "base_model_name_or_path", "revision"):
        if report.get(k) is not None:
            print(f"{k:>24}: {report[k]}")
    return 0


def cmd_report(args) -> int:
    from .report.export import build_report
    params = {"title": args.title} if args.title else {}
    files = build_report(args.root, args.out, pdf=not args.no_pdf, analysis_dir=args.analysis_dir, **params)
    for kind, path in files.items():
        print(f"{kind:>9}: {path}")
    return 0


def cmd_bench(args) -> int:
    from .bench.config import BenchConfig
    from .bench.parts import BENCH_PARTS, run_bench
    from .bench.summary import append_throughput_csv, summary_lines
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip()) or BENCH_PARTS
    unknown = sorted(set(parts) - set(BENCH_PARTS))
    if unknown:
        raise LoraNbError(f"--parts: unknown {', '.join(unknown)}; choose from {', '.join(BENCH_PARTS)}.")
    _check_bench_args(args)
    cfg = BenchConfig.preset(args.model, quick=args.quick, tiny=args.tiny, device=args.device,
                             precision=args.precision, batch_size=args.batch_size, tokenizer=args.tokenizer,
                             runs=args.runs)
    out = run_bench(cfg, parts=parts, log=lambda m: print(m, file=sys.stderr, flush=True))
    text = json.dumps(out, indent=1, default=str)
    if args.out:
        from .runs.rundir import atomic_write
        atomic_write(args.out, text + "\n")
    if args.throughput_csv:
        append_throughput_csv(out.get("throughput", []), args.throughput_csv)
    print(json.dumps(out, default=str) if args.json else "\n".join(summary_lines(out)))
    return 0


def _check_bench_args(args) -> None:
    """Mistakes that would otherwise surface only after minutes of benchmarking."""
    from .train import check_device
    if args.batch_size is not None and args.batch_size < 1:
        raise LoraNbError(f"--batch-size must be >= 1, not {args.batch_size}.")
    if check_device(args.device).type != "cuda" and args.precision == "fp16":
        raise LoraNbError("--precision fp16 needs --device cuda; use bf16 or fp32 on CPU.")
    if args.runs and not Path(args.runs).is_dir():
        raise LoraNbError(f"--runs {args.runs!r} is not a folder of run directories. Fix: give a grid's output "
                          "folder, e.g. runs/demo.")
    for option, path in (("--out", args.out), ("--throughput-csv", args.throughput_csv)):
        if path and (Path(path).is_dir() or any(p.exists() and not p.is_dir() for p in Path(path).parents)):
            raise LoraNbError(f"{option} {path!r}: a folder is in the way (or a file stands where a folder is "
                              "needed). Fix: give a file path in an existing or creatable folder.")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="lora-nb", description="LoRA / full fine-tuning reproduction kit on GLUE.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("count-params", help="trainable-parameter counts without downloading weights")
    p.add_argument("model", help="roberta-base, roberta-large, deberta-v2-xxlarge, deberta-v3-base, minilm, ...")
    _add_run_options(p, only={"lora_r", "lora_targets", "method", "task"})
    p.add_argument("--targets", dest="lora_targets", help="alias of --lora-targets")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_count_params)

    p = sub.add_parser("train", help="one run (the same code the notebooks call)")
    p.add_argument("-f", "--params-file", help="a papermill-style YAML parameter file")
    p.add_argument("--force", action="store_true",
                   help="replace the run directory when it holds another run (else refused)")
    _add_run_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run", help="execute a grid of notebook runs with papermill (resumable)")
    p.add_argument("grid", help="a grid YAML file, e.g. params/grids/cpu_minilm.yaml")
    p.add_argument("--workers", type=int, default=None,
                   help="local: parallel runs (one GPU each when GPUs exist; default 1, or GPUs x --runs-per-gpu)")
    p.add_argument("--force", action="store_true", help="rerun finished runs too")
    p.add_argument("--dry-run", action="store_true", help="list the planned runs and stop")
    p.add_argument("--timeout", type=float, default=None, help="seconds a notebook cell may run")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="then build the HTML report of the grid's output folder into DIR (as `lora-nb report "
                        "--no-pdf`)")
    p.add_argument("--runs-per-gpu", type=int, default=1, metavar="K",
                   help="K runs share a GPU (local: K workers per GPU; SLURM: K runs per job, one GPU)")
    p.add_argument("--executor", choices=["local", "slurm"], default="local",
                   help="local: this machine (default); slurm: one SLURM job per run, with submitit")
    s = p.add_argument_group("SLURM (--executor slurm; flags override --slurm-config)")
    s.add_argument("--slurm-config", default=None, metavar="FILE", help="a YAML file of the options below, "
                   "plus setup (shell lines) and sbatch (more #SBATCH options)")
    s.add_argument("--partition", default=None)
    s.add_argument("--account", default=None)
    s.add_argument("--qos", default=None)
    s.add_argument("--time-limit", type=int, default=None, metavar="MIN", help="minutes per job (default 1440)")
    s.add_argument("--gpus-per-run", type=int, default=None, metavar="G", help="GPUs per job (default 0)")
    s.add_argument("--cpus-per-run", type=int, default=None, metavar="C")
    s.add_argument("--mem-gb", type=float, default=None, metavar="M", help="memory per run, GB")
    s.add_argument("--array-parallelism", type=int, default=None, metavar="N",
                   help="at most N of this grid's jobs in flight")
    s.add_argument("--log-dir", default=None, metavar="DIR", help="job scripts and logs (default <output_root>/slurm)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("results", help="rebuild the results table from run directories")
    p.add_argument("root", help="a grid's output folder, e.g. runs/cpu_minilm")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("export", help="a run's adapter in another format (PEFT adapter folder)")
    p.add_argument("run_dir", help="a finished LoRA, rsLoRA, LoRA+, DoRA or VeRA run directory (or its "
                                   "adapter.safetensors)")
    p.add_argument("--format", choices=["peft"], default="peft", help="output format (default: peft)")
    p.add_argument("out", help="the folder to write (adapter_config.json + adapter_model.safetensors)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="the report notebook on a results folder, as .ipynb, .html and .pdf")
    p.add_argument("root", help="a folder of run directories, e.g. report/cpu_minilm/runs")
    p.add_argument("--out", required=True, help="output folder (report.ipynb, report.html, report.pdf)")
    p.add_argument("--title", default=None, help="the report's title")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF (which needs Chromium)")
    p.add_argument("--analysis-dir", default=None,
                   help="outputs of notebooks/04_low_rank_analysis.ipynb (default: 'analysis' beside ROOT)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("bench", help="side-by-side benchmarks: LoRA vs PEFT vs full FT, latency, padding, overhead")
    p.add_argument("--quick", action="store_true", help="fewer repetitions and a data subsample (a few minutes)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--model", default="minilm",
                   choices=["minilm", "roberta-base", "roberta-large", "deberta-v3-base", "deberta-v2-xxlarge"],
                   help="minilm: real weights; the others: random weights (time does not depend on values)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="autocast in the timed forwards, as in training (fp16: CUDA only)")
    p.add_argument("--batch-size", type=int, default=None, help="batch of the timed steps (default: the preset's)")
    p.add_argument("--parts", default="",
                   help="comma list of step, memory, latency, padding, tokenize, pipeline, throughput "
                        "(default: all; padding and tokenize need the model's tokenizer)")
    p.add_argument("--out", default=None, help="also write the JSON result to this file")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder or hub id, when not the model's own")
    p.add_argument("--runs", default=None, help="a folder of run directories: papermill overhead vs training time")
    p.add_argument("--throughput-csv", default=None, help="append the measured samples/s rows to this CSV")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests: a tiny random RoBERTa
    p.set_defaults(func=cmd_bench)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, LoraNbWarning):
        print(f"lora-nb: warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except LoraNbError as e:
        print(f"lora-nb: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the user gave: missing, a folder where a file belongs, disk full, read-only
        where = f": {e.filename}" if e.filename else ""
        print(f"lora-nb: error: {e.strerror or e}{where}. Fix: check that path, its permissions and the free disk "
              "space.", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = _default_showwarning


if __name__ == "__main__":
    sys.exit(main())
