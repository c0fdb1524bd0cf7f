"""The overlay vocabulary: names of formulations, blends and label policies (no imports, so every floor can use it)."""

LATENT_FORMULATIONS = ("sum", "mean", "offset")
PIXEL_FORMULATIONS = ("residual", "transplant")
#: Every formulation, in the order tables show them.
FORMULATIONS = (*LATENT_FORMULATIONS, *PIXEL_FORMULATIONS)
#: How a transplanted defect is blended onto its new surface, by code 0, 1, 2.
BLENDS = ("add", "paste", "poisson")
#: Transplant blend options: one of :data:`BLENDS`, or ``random`` (one of them per defect).
BLEND_CHOICES = (*BLENDS, "random")
#: Label policies.
POLICIES = ("same-class", "onto-background", "soft")
#: How a defect's mask is estimated from its residual: dark (darker than expected), bright, or both.
POLARITIES = ("dark", "bright", "both")
#: How a projection is matched to its image before the residual is taken: not at all, or by a brightness offset.
MATCHES = ("none", "offset")
#: Class names taken as defect-free when no ``background_class`` is named (compared case-insensitively).
BACKGROUND_NAMES = ("clean", "ok", "good", "normal", "background", "defect-free", "defect_free", "no-defect", "none")
