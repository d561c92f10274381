"""Where a run is recorded, and how grids of runs are run.

    rundir.py     the run-directory contract: manifest.json, epochs.csv, adapter, metrics.json; Status
    grid.py       grid files: blocks (each naming its notebook), matrices, MNLI links, sweep blocks
    selection.py  where a swept value is chosen: held-out evidence per group, the rule, selection.json
    runner.py     papermill execution: serial or workers, resume, recovery after a kill, failure capture
    slurm.py      the same runs as SLURM jobs (submitit): submit, poll, record each job's end, resume
    results.py    the results table rebuilt from run directories; the summary `lora-nb run` prints
"""
