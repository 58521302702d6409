"""${message}

Revision ID: ${up_revision}
${"Revises: " + comma(down_revision) if down_revision else "Revises: (none)"}
Create Date: ${create_date}

${wrap(f"Written by ``sa-llm upgrade``. Earlier releases stored the JSON value ``null`` in ``{s.message.table}.content_raw`` of every plain message, so ``content_raw IS NULL`` could not tell plain messages from raw ones; this revision makes those values SQL NULL, as sa_llm now writes them.")}
Nothing else changes (no column, no type). The downgrade leaves the rows as they are: sa_llm
reads SQL NULL and JSON null alike, and which rows held JSON null before is not recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# sa_llm-revision: upgrade schema=2 (sa-llm finds its revisions by this line)

# revision identifiers, used by Alembic.
revision: str = ${q(up_revision)}
down_revision: str | Sequence[str] | None = ${q(down_revision)}
branch_labels: str | Sequence[str] | None = ${q(branch_labels)}
depends_on: str | Sequence[str] | None = ${q(depends_on)}

TABLE = ${q(s.message.table)}


def _holds_json_null(column: sa.ColumnClause[Any], dialect: str) -> sa.ColumnElement[bool]:
    """Whether ``column`` holds the JSON value null (not SQL NULL), in this database's terms."""
    if dialect == "postgresql":
        # json has no = operator and keeps its input text; jsonb_typeof of the value read as
        # jsonb serves json, jsonb and text columns alike.
        return sa.func.jsonb_typeof(sa.cast(column, postgresql.JSONB())) == "null"
    if dialect in ("mysql", "mariadb"):
        return sa.func.json_type(column) == "NULL"
    # SQLite, and databases that keep JSON as text: SQLAlchemy wrote the text "null".
    return column == "null"


def upgrade() -> None:
    """Set ``content_raw`` to SQL NULL where it holds the JSON value null."""
    context = op.get_context()
    if not context.as_sql:  # offline (``--sql``) there is no database to inspect
        names = {column["name"] for column in sa.inspect(op.get_bind()).get_columns(TABLE)}
        if "content_raw" not in names:
            return
    content_raw: sa.ColumnClause[Any] = sa.column("content_raw")
    messages = sa.table(TABLE, content_raw)
    op.execute(
        messages.update()
        .where(_holds_json_null(content_raw, context.dialect.name))
        .values(content_raw=sa.null())
    )


def downgrade() -> None:
    """Nothing to undo: SQL NULL reads as JSON null did, and the rows stay as they are."""
