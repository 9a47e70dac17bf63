"""supn-anomaly models: the built-in models, and the scorers each one can run."""
from __future__ import annotations

from ..scoring.registry import COST_WORDS, INSTANT, NEEDS_TRAINING, SLOW


def add_parser(sub, name):
    return sub.add_parser(name, help="list the built-in models and the scorers each one offers",
                          description="List the built-in models (for --model) with their modality and channels, "
                                      "then the scorers each model can run (for --scorer), its default first. "
                                      "Costs: " + "; ".join(COST_WORDS.values()) + ".")


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns; the last one is not padded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return ["  ".join([f"{cell:<{w}}" for cell, w in zip(r, widths)] + [r[-1]]) for r in [header, *rows]]


def scorer_lines(model) -> list[str]:
    """The model's scorers grouped by cost, its default first and marked."""
    from ..scoring import available_scorers, default_scorer_name, scorer_info

    default = default_scorer_name(model)
    names = [default] + [n for n in available_scorers(model) if n != default]
    lines = []
    for cost, label in ((INSTANT, "instant"), (SLOW, "slow"), (NEEDS_TRAINING, "needs training, network shipped")):
        group = [n + (" (default)" if n == default else "") for n in names if scorer_info(n).cost == cost]
        if group:
            lines.append(f"{label}: {', '.join(group)}")
    return lines


def run(args) -> int:
    from ..models import builtin_model_names, load_model
    from ..scoring import default_scorer_name

    models = [load_model(name) for name in builtin_model_names()]
    if not models:
        print("no built-in models are installed")
        return 0
    print("Built-in models (--model NAME):")
    rows = [(m.name, m.modality, ", ".join(m.channel_names), default_scorer_name(m),
             m.metadata.get("description", "")) for m in models]
    print("\n".join(table(("MODEL", "MODALITY", "CHANNELS", "DEFAULT SCORER", "DESCRIPTION"), rows)))
    print("\nScorers of each model (--scorer NAME):")
    rows = [(m.name if i == 0 else "", line) for m in models for i, line in enumerate(scorer_lines(m))]
    print("\n".join(table(("MODEL", "SCORERS"), rows)))
    print("\nAny model also runs a self-supervised scorer (ssl-*) whose network was trained for it: "
          "supn-anomaly train-scorer, then detect --segmenter FILE.")
    return 0
