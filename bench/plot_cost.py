"""The cost-per-day plot of docs/cost-and-observability.md, from a ledger of demo data.

Run from the repository root with ``python bench/plot_cost.py`` (needs matplotlib, in the
``bench`` dependency group). It builds the demo's chat models with an ``@acts_as_usage`` class on
an in-memory SQLite database, runs 14 days of turns through sa_llm's scripted fake model (which
serves any model id) priced as ``gpt-4.1-nano`` and ``claude-haiku-4-5`` (model rows carrying the
registry's prices), with scripted 503s retried on some days; moves each day's ledger rows to that
day (the turns all run now; the plot shows the grouping, not real traffic); then runs the
documented per-day query and plots it to ``docs/img/cost-per-day.png``.
"""

from __future__ import annotations

import random
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "img" / "cost-per-day.png"
sys.path.insert(0, str(ROOT / "tests"))

DAYS = 14
MODELS = ("gpt-4.1-nano", "claude-haiku-4-5")


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sqlalchemy import create_engine, func, select, update
    from sqlalchemy.orm import Session

    import sa_llm
    from sa_llm import registry
    from sa_llm.testing import fake_llm
    from usage_support import ledger_models

    models = ledger_models()
    Usage, Model = models["Usage"], models["Model"]
    engine = create_engine("sqlite://")
    models["Base"].metadata.create_all(engine)
    rand = random.Random(19)
    start = datetime(2026, 11, 23, tzinfo=timezone.utc)
    sa_llm.configure(retry_interval=0, telemetry=False)
    ids = {name: registry.find(name).id for name in MODELS}  # aliases resolved
    with Session(engine) as session, fake_llm(echo=False) as fake:
        for name in MODELS:
            listed = registry.find(name)
            priced = registry.ModelInfo(
                id=listed.id, name=listed.name, provider="fake", pricing=listed.pricing
            )
            session.add(Model.from_llm(priced))
        session.commit()
        for day in range(DAYS):
            for name in MODELS:
                chat = models["Chat"](model=ids[name], provider="fake")
                session.add(chat)
                session.commit()
                for _ in range(rand.randint(3, 8) if name == MODELS[0] else rand.randint(1, 4)):
                    if day % 4 == 2 and rand.random() < 0.5:
                        fake.error(503)  # retried: the ledger keeps the failed attempt
                    prompt = rand.randint(800, 6_000)
                    fake.reply(
                        "An answer.",
                        tokens=sa_llm.Tokens(
                            input=prompt,
                            output=rand.randint(100, 900),
                            cached=prompt // 2 if rand.random() < 0.4 else 0,
                        ),
                    )
                    chat.ask("A question of the day")
                moment = start + timedelta(days=day, hours=rand.randint(8, 18))
                session.execute(
                    update(Usage).where(Usage.chat_id == chat.id).values(started_at=moment)
                )
                session.commit()
        day_column = func.date(Usage.started_at)
        rows = session.execute(
            select(day_column, Usage.model, func.sum(Usage.total_cost))
            .group_by(day_column, Usage.model)
            .order_by(day_column)
        ).all()
    sa_llm.reset_config()

    days = sorted({row[0] for row in rows})
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=110)
    bottom = [0.0] * len(days)
    for name in MODELS:
        costs = {row[0]: float(Decimal(str(row[2] or 0))) for row in rows if row[1] == ids[name]}
        values = [costs.get(day, 0.0) for day in days]
        ax.bar([d[5:] for d in days], values, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("USD per day")
    ax.set_title("Cost per day and model: SUM(total_cost) GROUP BY date(started_at), model")
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    ax.legend(frameon=False)
    fig.tight_layout()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUTPUT)
    total = sum(bottom)
    print(f"wrote {OUTPUT.relative_to(ROOT)}: {len(days)} days, total {total:.6f} USD")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
