"""Compares sweeps by the compute each needed to reach the same Frechet distance.

  python examples/compare_sweeps.py --sweeps=runs/random,runs/tpe

For each sweep folder (written by examples/sweep.py) it prints the trials by
state, the best score, the images trained and time spent in all, and the images,
time and trials spent when the best score first reached the target. The default
target is the worst of the sweeps' best scores, so that every sweep reaches it.
"""

import json
import math
import os
import sys

from absl import app
from absl import flags

flags.DEFINE_list("sweeps", None, "Sweep output folders to compare, comma-separated.")
flags.DEFINE_float("target", None, "Frechet distance to reach; default: the highest of the "
                   "sweeps' best scores.")
flags.DEFINE_string("output_json", None, "Also write the comparison to this JSON file.")


def _flag_error():
  """Returns a one-line error for the first invalid flag, or None."""
  if not flags.FLAGS.sweeps:
    return "--sweeps is missing: expected sweep folders, e.g. --sweeps=runs/a,runs/b"
  for folder in flags.FLAGS.sweeps:
    if not os.path.isdir(folder):
      return f"--sweeps entry {folder!r} is invalid: no such folder"
    if not os.path.isfile(os.path.join(folder, "study.json")):
      return (f"--sweeps entry {folder!r} is invalid: it has no study.json, expected a folder "
              "written by examples/sweep.py")
  target = flags.FLAGS.target
  if target is not None and not (math.isfinite(target) and target >= 0):
    return f"--target={target!r} is invalid: expected a finite number >= 0"
  output_json = flags.FLAGS.output_json
  if output_json is not None and os.path.isdir(output_json):
    return f"--output_json={output_json!r} is invalid: it is a folder, expected a file path"
  return None


def _summary(folder, costs, target):
  # Imported here so a bad flag is reported before TensorFlow and Optuna load.
  from gan_lib import sweep_cost  # pylint: disable=g-import-not-at-top

  states = [cost.state for cost in costs]
  reached = sweep_cost.cost_to_reach(costs, target)
  return {
      "sweep": folder,
      "trials": len(costs),
      "complete": states.count("COMPLETE"),
      "pruned": states.count("PRUNED"),
      "failed": states.count("FAIL"),
      "best_score": sweep_cost.best_score(costs),
      "images": sum(cost.images for cost in costs),
      "seconds": sum(cost.seconds for cost in costs),
      "target": target,
      "trials_to_target": reached.trials if reached else None,
      "images_to_target": reached.images if reached else None,
      "seconds_to_target": reached.seconds if reached else None,
  }


def _format_table(rows):
  header = ("| sweep | trials (complete / pruned / failed) | best FD | images trained | minutes "
            "| trials to target | images to target | minutes to target |")
  lines = [header, "|" + "---|" * 8]
  for row in rows:
    if row["trials_to_target"] is None:
      reached = ("not reached",) * 3
    else:
      reached = (str(row["trials_to_target"]), f"{row['images_to_target']:,}",
                 f"{row['seconds_to_target'] / 60:.1f}")
    lines.append(
        f"| {row['sweep']} | {row['trials']} ({row['complete']} / {row['pruned']} / "
        f"{row['failed']}) | {row['best_score']:.2f} | {row['images']:,} | "
        f"{row['seconds'] / 60:.1f} | " + " | ".join(reached) + " |")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}; every setting is a --flag")
  error = _flag_error()
  if error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  import optuna  # pylint: disable=g-import-not-at-top
  from gan_lib import io_utils  # pylint: disable=g-import-not-at-top
  from gan_lib import sweep_cost  # pylint: disable=g-import-not-at-top

  optuna.logging.set_verbosity(optuna.logging.WARNING)
  costs = {folder: sweep_cost.trial_costs(sweep_cost.load_sweep(folder), folder)
           for folder in flags.FLAGS.sweeps}
  bests = [sweep_cost.best_score(folder_costs) for folder_costs in costs.values()]
  target = flags.FLAGS.target
  if target is None:
    target = max(bests)
    if not math.isfinite(target):
      sys.exit("error: a sweep has no completed trial, so there is no common target; give "
               "--target")
  rows = [_summary(folder, folder_costs, target) for folder, folder_costs in costs.items()]
  print(f"Target Frechet distance: {target:.4f}")
  print(_format_table(rows))
  if flags.FLAGS.output_json:
    io_utils.atomic_write_text(flags.FLAGS.output_json, json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
  app.run(main)
