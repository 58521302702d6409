"""${message}

Revision ID: ${up_revision}
${"Revises: " + comma(down_revision) if down_revision else "Revises: (none)"}
Create Date: ${create_date}

${wrap(f"Written by ``sa-llm upgrade``. Adds the turn lease to ``{s.chat.table}``: ``turn_token``, ``turn_expires_at``, ``cancel_requested_at`` (one turn per chat across processes, crash recovery, cancel from anywhere) and its event counter ``event_seq``; ``status`` (pending, streaming, complete, failed, cancelled, interrupted) and ``thinking_raw`` (every thinking block of a reply as sent, for replay) to ``{s.message.table}``; the tool-approval columns to ``{s.tool_call.table}``: ``approval``, ``approval_arguments_hash``, ``approval_decided_by``, ``approval_decided_at``, ``approval_reason``; the chats' event log ``{s.event.table}`` (what viewers follow live); and ``{s.usage.table}``, the usage ledger (one row per provider attempt). Existing rows keep NULL, which reads as no turn running, complete, and no decision needed.")}
A column or table that exists already is left alone, so the revision fits any older schema.
The downgrade drops the columns and the tables of this revision that exist (Alembic keeps no
record of which ones the upgrade found already there); the other rows stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# sa_llm-revision: upgrade schema=3 (sa-llm finds its revisions by this line)

# revision identifiers, used by Alembic.
revision: str = ${q(up_revision)}
down_revision: str | Sequence[str] | None = ${q(down_revision)}
branch_labels: str | Sequence[str] | None = ${q(branch_labels)}
depends_on: str | Sequence[str] | None = ${q(depends_on)}

EVENTS = ${q(s.event.table)}


def _columns() -> dict[str, list[sa.Column[Any]]]:
    """The columns of this revision, per table, in the order they are added."""
    return {
        ${q(s.chat.table)}: [
            sa.Column("turn_token", sa.String(64), nullable=True),
            sa.Column("turn_expires_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("event_seq", sa.Integer(), server_default="0", nullable=False),
        ],
        ${q(s.message.table)}: [
            sa.Column("status", sa.String(16), nullable=True),
            sa.Column("thinking_raw", sa.JSON(), nullable=True),
        ],
        ${q(s.tool_call.table)}: [
            sa.Column("approval", sa.String(16), nullable=True),
            sa.Column("approval_arguments_hash", sa.String(64), nullable=True),
            sa.Column("approval_decided_by", sa.String(255), nullable=True),
            sa.Column("approval_decided_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("approval_reason", sa.Text(), nullable=True),
        ],
    }


def _existing(table: str) -> set[str] | None:
    """The table's column names; None in offline mode (``--sql``), which has no database."""
    if op.get_context().as_sql:
        return None
    return {column["name"] for column in sa.inspect(op.get_bind()).get_columns(table)}


def _has_events_table() -> bool | None:
    """Whether the event log exists; None in offline mode."""
    if op.get_context().as_sql:
        return None
    return sa.inspect(op.get_bind()).has_table(EVENTS)


def upgrade() -> None:
    """Add the columns each table lacks, then the event log and the usage ledger if missing."""
    for table, columns in _columns().items():
        present = _existing(table) or set()
        missing = [column for column in columns if column.name not in present]
        if missing:
            # Batch mode: where SQLite cannot ALTER, Alembic copies the table (rows included).
            with op.batch_alter_table(table) as batch_op:
                for column in missing:
                    batch_op.add_column(column)
    if not _has_events_table():
        _create_events()
    if not _has_table(${q(s.usage.table)}):
${s.usage_table_operations(8)}


def _has_table(table: str) -> bool:
    """Whether the table exists; False in offline mode (``--sql``), which creates it."""
    if op.get_context().as_sql:
        return False
    return sa.inspect(op.get_bind()).has_table(table)


def _create_events() -> None:
    """The chats' event log: what viewers follow live (``sa_llm.events``)."""
    op.create_table(
        EVENTS,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column(
            ${q(s.fks.event_chat)},
            ${s.pk_type},
            sa.ForeignKey(${q(s.chat.table + ".id")}, ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=True),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        ${call("sa.UniqueConstraint", [q(s.fks.event_chat), '"seq"', "name=" + q(s.names.event_unique)], 8, ",")}
    )


def downgrade() -> None:
    """Drop the usage ledger and the event log, then this revision's columns that exist,
    newest first; the rows of the other tables stay."""
    if op.get_context().as_sql or _has_table(${q(s.usage.table)}):
        op.drop_table(${q(s.usage.table)})
    if _has_events_table() is not False:
        op.drop_table(EVENTS)
    for table, columns in reversed(_columns().items()):
        present = _existing(table)
        names = [c.name for c in reversed(columns) if present is None or c.name in present]
        if names:
            with op.batch_alter_table(table) as batch_op:
                for name in names:
                    batch_op.drop_column(name)
