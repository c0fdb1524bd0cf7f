#!/usr/bin/env bash
# The NEU benchmark behind benchmarks/results/neu/ (and the README's headline table).
#
# Run from the repository root:  bash benchmarks/run_neu.sh
#
# NEU images may not be copied into the repository, so the run folder (cells, cached VAEs and
# classifiers, the generated-vs-real image grids) lives OUTSIDE it ($RUN); only results.json,
# report.md and the two plots are written to benchmarks/results/neu/<classifier>/.
#
# Budget: about 3 hours on a shared 2-core CPU, so images are 48 px and the ResNet-18 gets only 100
# steps (the small CNN 200; a last run gives it 300 for three arms); all 5 seeds. Both runs share one cache: the VAEs of (k, seed) are
# trained once. Rerunning the script skips every finished cell.
set -euo pipefail

DATA=${DATA:-../shared/datasets/neu_det}
RUN=${RUN:-/work/neu_runs/main}
RESULTS=benchmarks/results/neu
COMMON=(--split-file "$DATA/splits.csv" --per-class 5,10,20,40 --image-size 48
        --vae-steps 600 --prior-steps 150 --jobs 2 --threads 1 --cache-dir "$RUN/cache")

augvae bench "$DATA" --out "$RUN/small-cnn" --classifiers small-cnn --seeds 5 --steps 200 "${COMMON[@]}"
augvae bench "$DATA" --out "$RUN/resnet18" --classifiers resnet18 --seeds 5 --steps 100 "${COMMON[@]}"

for clf in small-cnn resnet18; do
    augvae bench --report-only --out "$RUN/$clf" --report-to "$RESULTS/$clf" --no-grids
done

# ResNet-18 with three times the steps (300), for the arms that matter most: is the 100-step picture
# an artefact of under-training? (About 45 minutes on 2 cores.)
augvae bench "$DATA" --out "$RUN/resnet18-300" --classifiers resnet18 --seeds 5 --steps 300 --arms original,classic,vae "${COMMON[@]}"
augvae bench --report-only --out "$RUN/resnet18-300" --report-to "$RESULTS/resnet18-300" --no-grids
