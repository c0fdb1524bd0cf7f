#!/usr/bin/env bash
# The ELPV benchmark behind benchmarks/results/elpv/ (and the README's headline): the setting augvae is for,
# a few defect images (k = 5, 10, 20 defective cells) and every defect-free pool image (1,358 'ok' cells).
#
# Run from the repository root:  bash benchmarks/run_elpv.sh
#
# ELPV images may not be copied into the repository (CC BY-NC-SA; see ../shared/datasets/elpv/SOURCE.md), so the
# run folder (cells, cached VAEs and classifiers, the generated-vs-real image grids) lives OUTSIDE it ($RUN); only
# results.json, report.md and the plots are written to benchmarks/results/elpv/<run>/.
#
# Budget on a shared 2-core CPU (measured): a seed of k = 10 (8 cells) takes about 17 min with 2 jobs, so the
# small-CNN grid is about 5 hours, and its convergence check (original, the better baseline and the best augvae
# arm at twice the steps) about 3 more. Rerunning the script skips every finished cell, so it can be run in pieces.
set -euo pipefail

DATA=${DATA:-../shared/datasets/elpv}
RUN=${RUN:-/work/runs/elpv}
RESULTS=benchmarks/results/elpv
# ELPV's defects (cracks, inactive areas, broken fingers) are darker than the cell: --extract-polarity dark.
# --min-steps 600: the floor of the auto budget when this grid ran (the default is 1,200 now); the auto budget here is
# 1,320 steps either way, and the same settings keep every finished cell. --extract-mask-low 1.5 --extract-mask-high 3:
# the mask thresholds when steps 1-4 ran (the default is z 3 to 5 since step 5 measured it; steps 5 and 6 override them).
# Steps 1-5 also ran before the empty-mask guard (a defect whose mask is empty is no longer drawn); step 6 runs with it.
# --unplaced keep-label: the steps before 7q compute the rule of before dc5397a, when a transplanted defect placed off the
# frame still gave the unchanged defect-free image its defect label (7.5% of the VAE's transplants; step 7q measures the
# fix). The flag computes what those cells computed and keeps their fingerprint (7p ran after the fix, with the flag, to
# join its folder). --blend random: every step before 8 ran with a random blend per defect, the default until step 8
# (with --background-class the default is the feathered paste since then; a step that names its blend puts it last).
COMMON=(--split-file "$DATA/splits.csv" --background-class ok --seeds 5 --image-size 64 --extract-polarity dark --min-steps 600
        --vae-steps 4000 --vae-batch-size 32 --vae-hidden-dim 128 --jobs 2 --threads 1 --cache-dir "$RUN/cache"
        --extract-mask-low 1.5 --extract-mask-high 3 --unplaced keep-label --blend random)
ARMS=original,classic,transplant,classic+transplant,blurmask,classic+blurmask,cutpaste,classic+cutpaste

# report NAME: merge RUN/NAME's finished cells into RESULTS/NAME. The report refuses a folder holding files it does not
# write, so the folder's pair files go first (pair writes them again after it): the script can be rerun.
report() {
  rm -f "$RESULTS/$1"/paired_*.json
  augvae bench --report-only --out "$RUN/$1" --report-to "$RESULTS/$1" --no-grids
}
# pair VARIANT GRID OUTNAME [pair_runs.py options]: pair RUN/VARIANT's arms with RUN/GRID's by seed into RESULTS/VARIANT.
pair() {
  python benchmarks/pair_runs.py --variant "$RUN/$1" --grid "$RUN/$2" --out "$RESULTS/$1/$3" "${@:4}"
}

# 1. The main grid: every arm, k = 5, 10, 20, the auto step budget, the convergence check. What is committed in
#    benchmarks/results/elpv/small-cnn/ is k = 5 and 10 of it (run with `--cell` selectors) and k = 20 for five arms (step 1c);
#    the other k = 20 cells and the convergence check beyond step 1b are not run yet, nor are steps 2-4 below.
augvae bench "$DATA" --out "$RUN/small-cnn" --per-class 5,10,20 --arms "$ARMS" "${COMMON[@]}"
report small-cnn

# 1b. The part of the convergence check that is committed: k = 5, all 5 seeds, run on its own (the check that step 1
#     runs after its grid covers every k and seed; this piece writes the same cells into the same folder).
CELLS=$(for s in 0 1 2 3 4; do for a in original classic classic+transplant; do printf 'small-cnn__%s__k5__s%s,' "$a" "$s"; done; done)
augvae bench "$DATA" --out "$RUN/small-cnn/convergence" --per-class 5,10,20 --arms original,classic,classic+transplant \
    --steps 2640 --no-convergence-check --cell "${CELLS%,}" "${COMMON[@]}"
report small-cnn

# 1c. The part of k = 20 that is committed: original, classic and the arms on top of classic, 5 seeds (about 45 min with 2 jobs).
CELLS=$(for s in 0 1 2 3 4; do for a in original classic classic+transplant classic+blurmask classic+cutpaste; do printf 'small-cnn__%s__k20__s%s,' "$a" "$s"; done; done)
augvae bench "$DATA" --out "$RUN/small-cnn" --per-class 5,10,20 --arms "$ARMS" --cell "${CELLS%,}" "${COMMON[@]}"
report small-cnn

# 2. The generated share: gen_p 0.25 instead of 0.5 for the transplant arms (k = 5, 10).
augvae bench "$DATA" --out "$RUN/small-cnn-genp0.25" --per-class 5,10 --gen-p 0.25 --no-convergence-check \
    --arms original,transplant,classic+transplant "${COMMON[@]}"
report small-cnn-genp0.25

# 3. ResNet-18 from scratch at a cut budget of 400 steps (321 s a cell on one core; the auto budget, 1,290 steps, would
#    take about 17 minutes a cell), without the convergence check (it would double that). What is committed in benchmarks/results/elpv/resnet18/
#    is k = 5, all five arms below, 5 seeds (about 75 minutes with 2 jobs); k = 10 is not run yet.
augvae bench "$DATA" --out "$RUN/resnet18" --classifiers resnet18 --per-class 5,10 --steps 400 --no-convergence-check \
    --arms original,classic,classic+transplant,classic+blurmask,classic+cutpaste "${COMMON[@]}"
report resnet18

# 4. Attempts to make the VAE's part count (k = 5, 10): generated samples filtered by the real-data classifier of the
#    same cell (kept if it gives their class at least 0.5), and the pasted blend instead of a random one.
augvae bench "$DATA" --out "$RUN/small-cnn-filter0.5" --per-class 5,10 --filter-confidence 0.5 --no-convergence-check \
    --arms original,classic+transplant "${COMMON[@]}"
report small-cnn-filter0.5
augvae bench "$DATA" --out "$RUN/small-cnn-paste" --per-class 5,10 --no-convergence-check \
    --arms original,classic+transplant,classic+blurmask "${COMMON[@]}" --blend paste
report small-cnn-paste

# 5. A stricter mask (z 3 to 5 instead of 1.5 to 3; benchmarks/elpv_masks.py shows why): classic, classic+transplant and
#    its blur-mask control at the same thresholds, k = 5 and 10, at the grid's 1,320 steps. The classic cells are the
#    same computation as step 1's (identical accuracies), so the report pairs them by seed with step 1's controls too.
augvae bench "$DATA" --out "$RUN/small-cnn-z3" --per-class 5,10 --steps 1320 --no-convergence-check \
    --arms classic,classic+transplant,classic+blurmask "${COMMON[@]}" --min-steps 1200 --extract-mask-low 3 --extract-mask-high 5
report small-cnn-z3
pair small-cnn-z3 small-cnn paired_with_grid.json

# 6. The library's default as it ships (z 3 to 5 and the empty-mask guard: a defect whose mask has no pixel above 0.5 is
#    never drawn), k = 5, 10 and 20, at the grid's 1,320 steps: classic, classic+transplant and its blur-mask control.
#    The classic cells are step 5's (no transplant: the same computation and settings), so they are copied, not rerun.
#    About 75 minutes with 2 jobs.
mkdir -p "$RUN/small-cnn-guard/cells"
cp -n "$RUN/small-cnn-z3/bench.json" "$RUN/small-cnn-guard/" 2>/dev/null || true
cp -n "$RUN"/small-cnn-z3/cells/small-cnn__classic__*.json "$RUN/small-cnn-guard/cells/" 2>/dev/null || true
augvae bench "$DATA" --out "$RUN/small-cnn-guard" --per-class 5,10,20 --steps 1320 --no-convergence-check \
    --arms classic,classic+transplant,classic+blurmask "${COMMON[@]}" --min-steps 1200 --extract-mask-low 3 --extract-mask-high 5
report small-cnn-guard
pair small-cnn-guard small-cnn paired_with_grid.json
pair small-cnn-guard small-cnn-z3 paired_with_z3.json

# 7. A re-run on another machine with the test AUROC recorded (cells of one setting are not identical across machines,
#    so every compared arm runs here; pair_runs.py --shared none checks machine and images), at the default as it ships
#    (z 3 to 5, the guard): the baselines, the transplant, its blur control, CutPaste and a new control, classic+relabel
#    (a defect-free cell, unchanged, labelled defective: what the label alone does). What is committed in
#    benchmarks/results/elpv/default/ is all of it (7a, k = 5 and 10, took about 60 minutes with 2 jobs on the 2026-12-07
#    machine; 7b to 7d about 2 hours more).
D7BASE=(--split-file "$DATA/splits.csv" --background-class ok --seeds 5 --image-size 64 --extract-polarity dark --min-steps 1200
    --steps 1320 --vae-steps 4000 --vae-batch-size 32 --vae-hidden-dim 128 --jobs 2 --threads 1 --cache-dir "$RUN/cache"
    --no-convergence-check)
D7=("${D7BASE[@]}" --unplaced keep-label --blend random)
D7ARMS=original,classic,transplant,classic+transplant,classic+blurmask,classic+cutpaste,classic+relabel
# 7a. k = 5, then k = 10: every arm but transplant alone.
for k in 5 10; do
  CELLS=$(for s in 0 1 2 3 4; do for a in original classic classic+transplant classic+blurmask classic+relabel classic+cutpaste; do printf 'small-cnn__%s__k%s__s%s,' "$a" "$k" "$s"; done; done)
  augvae bench "$DATA" --out "$RUN/default" --per-class 5,10,20 --arms "$D7ARMS" --cell "${CELLS%,}" "${D7[@]}"
done
# 7b. The convergence check at k = 10: original, classic and classic+transplant at twice the steps (the report, after
#     7d, merges it).
CELLS=$(for s in 0 1 2 3 4; do for a in original classic classic+transplant; do printf 'small-cnn__%s__k10__s%s,' "$a" "$s"; done; done)
augvae bench "$DATA" --out "$RUN/default/convergence" --per-class 5,10,20 --arms original,classic,classic+transplant \
    --cell "${CELLS%,}" "${D7[@]}" --steps 2640
# 7i. The convergence check at k = 5 and 20 (classic and classic+transplant at twice the steps; original was not rerun
#     for time). About 45 minutes with 2 jobs. It ran after 7d on the 2026-12-07 machine;
#     the cells are independent of 7c-7d, and 7d's report merges them.
for k in 5 20; do
  CELLS=$(for s in 0 1 2 3 4; do for a in classic classic+transplant; do printf 'small-cnn__%s__k%s__s%s,' "$a" "$k" "$s"; done; done)
  augvae bench "$DATA" --out "$RUN/default/convergence" --per-class 5,10,20 --arms original,classic,classic+transplant \
      --cell "${CELLS%,}" "${D7[@]}" --steps 2640
done
# 7c. The library's way: a generated defect replaces a defect-free sample (a random defect class each), as augvae's
#     transforms and MixedDataset do, instead of a defect sample of its class.
augvae bench "$DATA" --out "$RUN/gen-replaces-ok" --per-class 5,10 --arms classic+transplant --gen-replaces defect-free "${D7[@]}"
report gen-replaces-ok
pair gen-replaces-ok default paired_with_default.json --shared none
# 7d. The rest of the grid (k = 20, transplant alone, CutPaste at k = 20), the filter of generated samples by the
#     real-data classifier, and two attempts to make the VAE's part count: the projection matched to each cell's
#     brightness (--extract-match offset), and defect-free samples replaced by defect images healed by their
#     projection (--heal-p 0.25).
augvae bench "$DATA" --out "$RUN/default" --per-class 5,10,20 --arms "$D7ARMS" "${D7[@]}"
report default
pair default default paired_arms.json --shared none
augvae bench "$DATA" --out "$RUN/filter0.5" --per-class 5,10 --arms classic+transplant --filter-confidence 0.5 "${D7[@]}"
report filter0.5
pair filter0.5 default paired_with_default.json --shared none
augvae bench "$DATA" --out "$RUN/match-offset" --per-class 5,10 --arms classic+transplant --extract-match offset "${D7[@]}"
report match-offset
pair match-offset default paired_with_default.json --shared none
augvae bench "$DATA" --out "$RUN/heal0.25" --per-class 5,10 --heal-p 0.25 --arms classic+transplant,classic+blurmask "${D7[@]}"
report heal0.25
pair heal0.25 default paired_with_default.json --shared none
# 7e, 7f. ResNet-18 at the default as it ships, with the AUROC: k = 5, then k = 10, three arms, the cut budget of step
#     3 (400 steps). About 45 and 30 minutes with 2 jobs.
for k in 5 10; do
  CELLS=$(for s in 0 1 2 3 4; do for a in classic classic+transplant classic+relabel; do printf 'resnet18__%s__k%s__s%s,' "$a" "$k" "$s"; done; done)
  augvae bench "$DATA" --out "$RUN/resnet18-default" --classifiers resnet18 --per-class 5,10 \
      --arms classic,classic+transplant,classic+relabel --cell "${CELLS%,}" "${D7[@]}" --steps 400
done
# 7g. The same at k = 20, in a folder of its own (a run folder's k list is part of its settings). About 26 minutes.
augvae bench "$DATA" --out "$RUN/resnet18-default-k20" --classifiers resnet18 --per-class 20 \
    --arms classic,classic+transplant,classic+relabel "${D7[@]}" --steps 400
report resnet18-default
pair resnet18-default resnet18-default paired_arms.json --shared none
report resnet18-default-k20
pair resnet18-default-k20 resnet18-default-k20 paired_arms.json --shared none
# 7h. Half the generated share (gen_p 0.25 instead of 0.5), classic+transplant at k = 5 and 10, paired with 7a. About
#     11 minutes with 2 jobs.
augvae bench "$DATA" --out "$RUN/genp0.25" --per-class 5,10 --arms classic+transplant --gen-p 0.25 "${D7[@]}"
report genp0.25
pair genp0.25 default paired_with_default.json --shared none
# 7j. One blend instead of a random one per sample: the feathered paste, the residual added, the seamless blend
#     (classic+transplant, k = 5 and 10, paired with 7a). 8 to 13 minutes each with 2 jobs.
for b in paste add poisson; do
  augvae bench "$DATA" --out "$RUN/blend-$b" --per-class 5,10 --arms classic+transplant "${D7[@]}" --blend "$b"
  report "blend-$b"
  pair "blend-$b" default paired_with_default.json --shared none
done
# 7k. Defects kept where they were found and as they were oriented (--translate 0 --no-transplant-rotate: flips only;
#     ELPV's busbars run one way, and a rotated or shifted defect brings a crossways or displaced piece of busbar
#     along): classic+transplant and its blur control, k = 5 and 10, paired with 7a. About 25 minutes with 2 jobs.
augvae bench "$DATA" --out "$RUN/aligned" --per-class 5,10 --arms classic+transplant,classic+blurmask \
    --no-transplant-rotate --translate 0 "${D7[@]}"
report aligned
pair aligned default paired_with_default.json --shared none
# 7l. The convergence check of ResNet-18 at k = 5: classic and classic+transplant at twice the cut budget (800
#     steps). About 9 minutes a cell with 2 jobs; report resnet18-default merges it.
CELLS=$(for s in 0 1 2 3 4; do for a in classic classic+transplant; do printf 'resnet18__%s__k5__s%s,' "$a" "$s"; done; done)
augvae bench "$DATA" --out "$RUN/resnet18-default/convergence" --classifiers resnet18 --per-class 5,10 \
    --arms classic,classic+transplant,classic+relabel --cell "${CELLS%,}" "${D7[@]}" --steps 800
report resnet18-default
pair resnet18-default resnet18-default paired_arms.json --shared none
# 7m. original at twice the steps at k = 5 and 20 (7i left it out for time); report default merges it.
for k in 5 20; do
  CELLS=$(for s in 0 1 2 3 4; do printf 'small-cnn__original__k%s__s%s,' "$k" "$s"; done)
  augvae bench "$DATA" --out "$RUN/default/convergence" --per-class 5,10,20 --arms original,classic,classic+transplant \
      --cell "${CELLS%,}" "${D7[@]}" --steps 2640
done
report default
pair default default paired_arms.json --shared none
# 7n. ResNet-18's controls at the default (the blur mask and CutPaste, on top of classic), k = 5 and 10, 400 steps, 5
#     seeds, into 7e-7f's folder (arms are grid fields: the fingerprint is the same). 20 cells in 50 minutes with 2 jobs.
R18ARMS=classic,classic+transplant,classic+relabel,classic+blurmask,classic+cutpaste
for k in 5 10; do
  CELLS=$(for s in 0 1 2 3 4; do for a in classic+blurmask classic+cutpaste; do printf 'resnet18__%s__k%s__s%s,' "$a" "$k" "$s"; done; done)
  augvae bench "$DATA" --out "$RUN/resnet18-default" --classifiers resnet18 --per-class 5,10 \
      --arms "$R18ARMS" --cell "${CELLS%,}" "${D7[@]}" --steps 400
done
report resnet18-default
pair resnet18-default resnet18-default paired_arms.json --shared none
# 7p. ResNet-18's controls at k = 20, into 7g's folder (the rule and fingerprint of its cells: --unplaced keep-label, in
#     D7). About 20 minutes with 2 jobs.
CELLS=$(for s in 0 1 2 3 4; do for a in classic+blurmask classic+cutpaste; do printf 'resnet18__%s__k20__s%s,' "$a" "$s"; done; done)
augvae bench "$DATA" --out "$RUN/resnet18-default-k20" --classifiers resnet18 --per-class 20 \
    --arms "$R18ARMS" --cell "${CELLS%,}" "${D7[@]}" --steps 400
report resnet18-default-k20
pair resnet18-default-k20 resnet18-default-k20 paired_arms.json --shared none
# 7q. The fix of dc5397a (a defect placed off the frame is placed again: --unplaced redraw, the default since): how often
#     it happened (benchmarks/elpv_offframe.py), then classic+transplant, CutPaste and the blur control at k = 5 and 10,
#     5 seeds, paired with 7a's cells (the same images, the old rule). 7r first checks that --unplaced keep-label still
#     computes 7a's cells exactly (two cells, their accuracies compared).
python benchmarks/elpv_offframe.py --data "$DATA" --vae "$RUN/cache/surface-vae/4fcd3d6ff514" --cells "$RUN/default" \
    --out "$RESULTS/offframe.json"
D7NEW=("${D7[@]/keep-label/redraw}")
augvae bench "$DATA" --out "$RUN/keep-label-check" --per-class 5,10,20 --arms classic+transplant,classic+cutpaste \
    --cell small-cnn__classic+transplant__k5__s0,small-cnn__classic+cutpaste__k5__s0 "${D7[@]}"
augvae bench "$DATA" --out "$RUN/redraw" --per-class 5,10 --arms classic+transplant,classic+cutpaste,classic+blurmask "${D7NEW[@]}"
report redraw
pair redraw default paired_with_default.json --shared none
# 7o. ResNet-18's label-only control at twice the cut budget (800 steps), k = 5 and 10; report resnet18-default merges it.
#     Not run yet (about 45 minutes with 2 jobs; stopped for time on 2026-12-07).
CELLS=$(for k in 5 10; do for s in 0 1 2 3 4; do printf 'resnet18__classic+relabel__k%s__s%s,' "$k" "$s"; done; done)
augvae bench "$DATA" --out "$RUN/resnet18-default/convergence" --classifiers resnet18 --per-class 5,10 \
    --arms "$R18ARMS" --cell "${CELLS%,}" "${D7[@]}" --steps 800
report resnet18-default
pair resnet18-default resnet18-default paired_arms.json --shared none

# 8. The default as it ships since the feathered paste became the blend onto defect-free surfaces (7j: it ranked the test
#    cells better than a random blend per defect at the same accuracy), with the off-frame fix (--unplaced redraw, 7q):
#    D7BASE's settings at their defaults. Run on a third machine (2026-12-07, late), so every compared arm runs here:
#    classic, classic+transplant and the three controls (the blur mask, now pasted too; CutPaste; labels alone), k = 5
#    and 10, then k = 20, 5 seeds. 75 cells in about 90 minutes with 2 jobs (the surface VAE, trained afresh, 13 of them).
D8ARMS=classic,classic+transplant,classic+blurmask,classic+cutpaste,classic+relabel
for ks in "5 10" "20"; do
  CELLS=$(for k in $ks; do for s in 0 1 2 3 4; do for a in ${D8ARMS//,/ }; do printf 'small-cnn__%s__k%s__s%s,' "$a" "$k" "$s"; done; done; done)
  augvae bench "$DATA" --out "$RUN/paste-default" --per-class 5,10,20 --arms "$D8ARMS" --cell "${CELLS%,}" "${D7BASE[@]}"
done
report paste-default
pair paste-default paste-default paired_arms.json --shared none
# 8b. Paired with step 7's cells (the previous default: the random blend, keep-label), which ran on another machine and
#     whose run folder is gone: rebuilt from the committed default/results.json, which holds every cell's metrics;
#     pair_runs.py --shared classic checks that classic is identical seed by seed (it is: the same computation).
python - "$RESULTS/default/results.json" "$RUN/default-from-results/cells" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
for c in json.loads(pathlib.Path(sys.argv[1]).read_text())["cells"]:
    (out / f"{c['id']}.json").write_text(json.dumps(c))
PY
pair paste-default default-from-results paired_with_default.json --shared classic
# 8c. transplant alone (no classic augmentation) with the paste, k = 5, 10, 20, into step 8's folder (arms are grid fields).
#     15 cells in 14 minutes with 2 jobs.
D8ARMS8C="$D8ARMS,transplant"
CELLS=$(for k in 20 5 10; do for s in 0 1 2 3 4; do printf 'small-cnn__transplant__k%s__s%s,' "$k" "$s"; done; done)
augvae bench "$DATA" --out "$RUN/paste-default" --per-class 5,10,20 --arms "$D8ARMS8C" --cell "${CELLS%,}" "${D7BASE[@]}"
# 8d. Step 8's convergence check at k = 5: classic and classic+transplant at twice the steps (2,640); report merges it.
CELLS=$(for s in 0 1 2 3 4; do for a in classic classic+transplant; do printf 'small-cnn__%s__k5__s%s,' "$a" "$s"; done; done)
augvae bench "$DATA" --out "$RUN/paste-default/convergence" --per-class 5,10,20 --arms "$D8ARMS8C" --cell "${CELLS%,}" \
    "${D7BASE[@]}" --steps 2640
report paste-default
pair paste-default paste-default paired_arms.json --shared none
pair paste-default default-from-results paired_with_default.json --shared classic
