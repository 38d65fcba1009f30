#!/bin/bash
# Grade a class in 3 shards as a Slurm job array, then join them (docs/grading.md; README "Grading at scale").
#   sbatch --array=1-3 slurm-array.sh          # the shards, in parallel
#   sbatch --dependency=afterok:<array job id> --wrap "bash slurm-array.sh merge"
#SBATCH --job-name=course-grade
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=01:00:00
set -euo pipefail
SHARDS=3
SEED=20261208                  # one seed for every shard of the class; keep it private
SUBMISSIONS=/shared/course/submissions
OUT=/shared/course/grades

# Install from the wheelhouse built by `make wheelhouse` (the course's wheel and its pinned dependencies).
python3 -m venv "$TMPDIR/venv"
"$TMPDIR/venv/bin/pip" install --no-index --find-links /shared/course/wheelhouse -r /shared/course/wheelhouse/requirements.txt course_utils
source "$TMPDIR/venv/bin/activate"
cd /shared/course/repository   # the checkout whose notebooks/ and solutions/ the grader reads

if [ "${1:-}" = merge ]; then
  course-grade merge "$OUT"/part-*.json --out "$OUT/grades.csv" --feedback "$OUT/feedback"
else
  course-grade "$SUBMISSIONS" --shard "$SLURM_ARRAY_TASK_ID/$SHARDS" --seed "$SEED" --jobs "$SLURM_CPUS_PER_TASK" --out "$OUT/part-$SLURM_ARRAY_TASK_ID.csv"
fi
