"""Run a tiny study from Python, load it into pandas, and draw a figure the report has not.

    python examples/from_python.py [OUT_DIR]      # about a minute on 2 CPU cores

The same API works in a notebook: ``ouroboros.run_study`` runs (or continues) a study exactly
as ``ouroboros run`` does; ``ouroboros.load_run`` reads any run directory. In a script, call
``run_study`` under ``if __name__ == "__main__":``: on a CPU with two or more cores the stages
run in worker processes, which Python starts by importing the script again (``spawn``).
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import ouroboros  # noqa: E402


def main(out: Path) -> None:

    # The built-in demo, shrunk: 2 policies x 2 seeds x 3 generations of tiny models.
    run = ouroboros.run_study(
        None, out=out / "run", quiet=True,
        overrides={"seeds": [0, 1], "generations": 3,
                   "policies": [{"name": "replace"}, {"name": "accumulate"}],
                   "data.train_size": 600, "data.test_size": 100, "data.valid_size": 50,
                   "training.tokens": 60000, "runtime.progress": False})

    # Every value of metrics.csv, signatures parsed.
    metrics = run.metrics
    print(metrics[["policy", "seed", "generation", "metric", "value", "n"]].head())

    # The report's summary: mean over seeds with the interval suited to each metric.
    summary = run.summary(["kl_true_model", "error_rate"])
    print(summary[summary.generation == summary.generation.max()].to_string(index=False))

    # A custom figure: KL against the share of ungrammatical samples, one point per seed and
    # generation, coloured by policy.
    wide = metrics.pivot_table(index=["policy", "seed", "generation"], columns="metric",
                               values="value").reset_index()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for policy, part in wide.groupby("policy"):
        ax.scatter(part["error_rate"], part["kl_true_model"], label=policy)
        for _, row in part.iterrows():
            ax.annotate(f"g{row['generation']}", (row["error_rate"], row["kl_true_model"]),
                        fontsize=7)
    ax.set_xlabel("error rate (share of ungrammatical samples)")
    ax.set_ylabel("KL(true || model), nats per sentence")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "kl_vs_error.png")
    print(f"figure: {out / 'kl_vs_error.png'}")

    # The worst samples of the last generation, with their lineage.
    last = int(metrics.generation.max())
    worst = run.samples(policy="replace", generation=last, sort="-perplexity", limit=3)
    print(worst[["seed", "id", "text", "valid", "reference_perplexity", "generator"]].to_string())
    print(run.verdicts()[0])


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/from-python"))
