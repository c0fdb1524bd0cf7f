#!/usr/bin/env bash
# Attempts to make the overlays help on NEU (after benchmarks/run_neu.sh): the small CNN, the same
# settings and the same cache (so the VAEs and the real-data classifiers of run_neu.sh are reused),
# changing one thing at a time. Results: benchmarks/results/neu/followups/<name>/.
#
# These ran with augvae before the converged rerun of run_neu.sh: at the earlier budget (200 steps), with
# ratio-based banks of generated images (now: every sample replaced with probability --gen-p) and without
# class-balanced batches. With today's augvae the same commands keep the earlier budget through --steps 200
# and --gen-p 0.5 (the bank sampling that a ratio of 1 amounted to); flags are today's names.
set -euo pipefail

DATA=${DATA:-../shared/datasets/neu_det}
RUN=${RUN:-/work/neu_runs/main}
RESULTS=benchmarks/results/neu/followups
COMMON=(--split-file "$DATA/splits.csv" --per-class 5,10,20,40 --image-size 48 --vae-steps 600 --prior-steps 150
        --jobs 2 --threads 1 --cache-dir "$RUN/cache" --classifiers small-cnn --seeds 5 --steps 200 --no-convergence-check
        --extract-mask-low 1.5 --extract-mask-high 3)  # the mask thresholds of the time (the default is z 3 to 5 now)

run() {  # name, then the options that differ from run_neu.sh
    local name=$1; shift
    augvae bench "$DATA" --out "$RUN/followup-$name" "${COMMON[@]}" "$@"
    augvae bench --report-only --out "$RUN/followup-$name" --report-to "$RESULTS/$name" --no-grids
}

# 1. Overlays built on a real training image (its texture kept) plus the decoded difference of a
#    second same-class source, instead of decoding the whole overlay (which blurs the texture away).
run real-base --arms original,vae,classic+vae --overlay-base real
# 2. Fewer generated images: 1 per 4 real ones instead of 1 per real one (the decoded overlays).
run ratio-0.25 --arms original,vae --ratio 0.25
# 3. The library's own path (augvae.overlay.engine.overlay_batch, as behind augvae.torchvision.VAEOverlay):
#    each real training image plus the decoded difference of a same-class source from the centroid.
run library --arms original,vae --overlay-base library
# 4. The paper's literal formulation: the sum of the sources' latent means, decoded.
run sum --arms original,vae --formulation sum
# 5. Soft labels: overlays of any two classes, labelled with a probability vector (like MixUp).
run soft --arms original,vae --policy soft
# 6. A larger latent space (64 instead of 16): the paper says it makes the overlays more realistic.
run latent-64 --arms original,vae --vae-latent-dim 64
# 7. A smaller KL weight (0.25 instead of 1): sharper reconstructions, a less regular latent space.
run beta-0.25 --arms original,vae --vae-beta 0.25
# 8. Longer VAE training (2400 steps instead of 600): less blur.
run vae-steps-2400 --arms original,vae --vae-steps 2400
# 9. Attempt 8 helped only at k = 5, where 2400 steps are 800 epochs of its 30 images. The same 800
#    epochs at k = 40 (240 images, 24 steps an epoch): 19200 steps.
run vae-epochs-800-k40 --arms original,vae --per-class 40 --vae-steps 19200
