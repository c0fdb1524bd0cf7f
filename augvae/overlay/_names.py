"""The overlay vocabulary: names of formulations, blends and label policies (no imports, so every floor can use it)."""

LATENT_FORMULATIONS = ("sum", "mean", "offset")
PIXEL_FORMULATIONS = ("residual", "transplant")
#: Every formulation, in the order tables show them.
FORMULATIONS = (*LATENT_FORMULATIONS, *PIXEL_FORMULATIONS)
#: How a transplanted defect is blended onto its new surface, by code 0, 1, 2.
BLENDS = ("add", "paste", "poisson")
#: Transplant blend options: one of :data:`BLENDS`, or ``random`` (one of them per defect).
BLEND_CHOICES = (*BLENDS, "random")
#: The blend ``auto`` stands for where defects go onto defect-free surfaces: the feathered ``paste``. On ELPV
#: (classic+transplant, k = 5 and 10, 5 seeds paired; benchmarks/results/elpv/README.md, "One blend instead of a random
#: one") it ranked the test cells better than a random blend per defect (AUROC +1.8 points, p 0.039; +0.9, p 0.044) at
#: the same accuracy (-0.9 and +0.3 points, n.s.); the additive residual ranked worst.
DEFAULT_BLEND_ONTO_DEFECT_FREE = "paste"
#: The blend ``auto`` stands for where a defect goes onto another defect image (no defect-free class): a random blend per
#: defect, the setting NEU's default was measured with (benchmarks/results/neu/README.md).
DEFAULT_BLEND = "random"


def default_blend(onto_defect_free: bool) -> str:
    """The blend that ``blend="auto"`` stands for, by where the defects go.

    Every entry point resolves ``auto`` through this function, so the default lives once.

    Args:
        onto_defect_free: Whether the defects are put onto defect-free surfaces (the ``onto-background`` policy,
            ``augvae generate --mode transplant --backgrounds``, ``augvae bench --background-class``).

    Returns:
        :data:`DEFAULT_BLEND_ONTO_DEFECT_FREE` or :data:`DEFAULT_BLEND`.

    Example:
        >>> default_blend(True), default_blend(False)
        ('paste', 'random')
    """
    return DEFAULT_BLEND_ONTO_DEFECT_FREE if onto_defect_free else DEFAULT_BLEND


#: Label policies.
POLICIES = ("same-class", "onto-background", "soft")
#: How a defect's mask is estimated from its residual: dark (darker than expected), bright, or both.
POLARITIES = ("dark", "bright", "both")
#: How a projection is matched to its image before the residual is taken: not at all, or by a brightness offset.
MATCHES = ("none", "offset")
#: Class names taken as defect-free when no ``background_class`` is named (compared case-insensitively).
BACKGROUND_NAMES = ("clean", "ok", "good", "normal", "background", "defect-free", "defect_free", "no-defect", "none")
