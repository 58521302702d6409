"""A worker process for the cross-process approval test: one step on one persisted chat.

Run as ``python approval_worker.py '<json job>'``; ``job["action"]`` is ``park`` (ask a
question whose tool call needs approval), ``approve`` (decide the waiting call, by name) or
``complete`` (run the decided round and let the model answer). Prints one JSON line with what
it saw; the refund tool appends to ``job["ran_file"]`` so the parent sees whether, where and
how often it ran.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for persisted.py

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import sa_llm
from persisted import configure_worker, default_models


class Refund(sa_llm.Tool):
    """Refunds an order."""

    requires_approval = True

    def execute(self, order_id: str) -> str:
        with open(os.environ["SA_LLM_RAN_FILE"], "a", encoding="utf-8") as ran:
            ran.write(f"{os.getpid()} refund {order_id}\n")
        return f"refunded {order_id}"


def main() -> None:
    job = json.loads(sys.argv[1])
    configure_worker(job)
    models = default_models()
    engine = create_engine(job["db_url"])
    out: dict[str, Any] = {"pid": os.getpid()}
    try:
        with Session(engine) as session:
            row = session.get(models["Chat"], job["chat_id"])
            assert row is not None
            chat = row.with_tool(Refund)
            if job["action"] == "park":
                reply = chat.ask("Refund order 42")
                out["tool_calls"] = [call.id for call in reply.tool_calls]
            elif job["action"] == "approve":
                waiting = chat.pending_approvals()
                decision = chat.approve(waiting[0].tool_call_id, by=job["by"])
                out["decided"] = [waiting[0].tool_call_id, decision.state, decision.decided_by]
            else:
                out["text"] = chat.complete().text
    finally:
        engine.dispose()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
