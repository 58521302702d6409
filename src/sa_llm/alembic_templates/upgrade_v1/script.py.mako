"""${message}

Revision ID: ${up_revision}
${"Revises: " + comma(down_revision) if down_revision else "Revises: (none)"}
Create Date: ${create_date}

${wrap(f"Written by ``sa-llm upgrade``. Adds to ``{s.message.table}``: ``content_raw``, ``cached_tokens``, ``cache_creation_tokens``, ``thinking_text``, ``thinking_signature``, ``thinking_tokens``; to ``{s.tool_call.table}``: ``thought_signature``.")}
A column that exists already is left alone, so the revision fits any older schema. The
downgrade drops the columns of this revision that exist (Alembic keeps no record of which ones
the upgrade found already there); the rows stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# sa_llm-revision: upgrade schema=1 (sa-llm finds its revisions by this line)

# revision identifiers, used by Alembic.
revision: str = ${q(up_revision)}
down_revision: str | Sequence[str] | None = ${q(down_revision)}
branch_labels: str | Sequence[str] | None = ${q(branch_labels)}
depends_on: str | Sequence[str] | None = ${q(depends_on)}


def _columns() -> dict[str, list[sa.Column[Any]]]:
    """The columns of this revision, per table, in the order they are added."""
    return {
        ${q(s.message.table)}: [
            sa.Column(
                "content_raw",
                sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                nullable=True,
            ),
            sa.Column("cached_tokens", sa.Integer(), nullable=True),
            sa.Column("cache_creation_tokens", sa.Integer(), nullable=True),
            sa.Column("thinking_text", sa.Text(), nullable=True),
            sa.Column("thinking_signature", sa.Text(), nullable=True),
            sa.Column("thinking_tokens", sa.Integer(), nullable=True),
        ],
        ${q(s.tool_call.table)}: [
            sa.Column("thought_signature", sa.Text(), nullable=True),
        ],
    }


def _existing(table: str) -> set[str] | None:
    """The table's column names; None in offline mode (``--sql``), which has no database."""
    if op.get_context().as_sql:
        return None
    return {column["name"] for column in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    """Add the columns each table lacks."""
    for table, columns in _columns().items():
        present = _existing(table) or set()
        missing = [column for column in columns if column.name not in present]
        if missing:
            # Batch mode: where SQLite cannot ALTER, Alembic copies the table (rows included).
            with op.batch_alter_table(table) as batch_op:
                for column in missing:
                    batch_op.add_column(column)


def downgrade() -> None:
    """Drop this revision's columns that exist, newest first; the rows stay."""
    for table, columns in reversed(_columns().items()):
        present = _existing(table)
        names = [c.name for c in reversed(columns) if present is None or c.name in present]
        if names:
            with op.batch_alter_table(table) as batch_op:
                for name in names:
                    batch_op.drop_column(name)
