"""${message}

Revision ID: ${up_revision}
${"Revises: " + comma(down_revision) if down_revision else "Revises: (none)"}
Create Date: ${create_date}

${wrap(f"Written by ``sa-llm install`` with the models in ``{s.module_file}``; the tables match those models column for column ({'UUID' if s.use_uuid else 'integer'} primary keys), so ``alembic check`` finds nothing to add. Tables: {s.table_list}.")}
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# sa_llm-revision: install schema=${s.schema_version} (sa-llm finds its revisions by this line)

# revision identifiers, used by Alembic.
revision: str = ${q(up_revision)}
down_revision: str | Sequence[str] | None = ${q(down_revision)}
branch_labels: str | Sequence[str] | None = ${q(branch_labels)}
depends_on: str | Sequence[str] | None = ${q(depends_on)}


def upgrade() -> None:
    """Create the chat tables."""
    op.create_table(
        ${q(s.model.table)},
        sa.Column("id", ${s.pk_type}, primary_key=True),
        sa.Column("model_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("family", sa.String(255), nullable=True),
        sa.Column("model_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("context_window", sa.Integer(), nullable=True),
        sa.Column("max_output_tokens", sa.Integer(), nullable=True),
        sa.Column("knowledge_cutoff", sa.String(32), nullable=True),
        sa.Column(
            "modalities",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "capabilities",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "pricing",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        ${call("sa.UniqueConstraint", ['"provider"', '"model_id"', "name=" + q(s.names.model_unique)], 8, ",")}
    )
    ${call("op.create_index", [q(s.names.model_provider_index), q(s.model.table), '["provider"]'])}

    op.create_table(
        ${q(s.chat.table)},
        sa.Column("id", ${s.pk_type}, primary_key=True),
        sa.Column(
            ${q(s.fks.chat_model)},
            ${s.pk_type},
            sa.ForeignKey(${q(s.model.table + ".id")}, ondelete="SET NULL"),
            nullable=True,
        ),
        # The turn lease: which turn holds the chat, until when, and a cancel request for it.
        sa.Column("turn_token", sa.String(64), nullable=True),
        sa.Column("turn_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
        # The seq of the chat's last event (its event log).
        sa.Column("event_seq", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    ${call("op.create_index", [q(s.names.chat_model_index), q(s.chat.table), "[" + q(s.fks.chat_model) + "]"])}

    op.create_table(
        ${q(s.message.table)},
        sa.Column("id", ${s.pk_type}, primary_key=True),
        sa.Column(
            ${q(s.fks.message_chat)},
            ${s.pk_type},
            sa.ForeignKey(${q(s.chat.table + ".id")}, ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column(
            "content_raw",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=True,
        ),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("cached_tokens", sa.Integer(), nullable=True),
        sa.Column("cache_creation_tokens", sa.Integer(), nullable=True),
        sa.Column("thinking_text", sa.Text(), nullable=True),
        sa.Column("thinking_signature", sa.Text(), nullable=True),
        sa.Column("thinking_tokens", sa.Integer(), nullable=True),
        # Thinking blocks as sent (plain JSON: JSONB would reorder their keys).
        sa.Column("thinking_raw", sa.JSON(), nullable=True),
        sa.Column(
            ${q(s.fks.message_model)},
            ${s.pk_type},
            sa.ForeignKey(${q(s.model.table + ".id")}, ondelete="SET NULL"),
            nullable=True,
        ),
        # The tool call a tool result answers; its foreign key is added below, once the
        # tool calls table exists (the two tables point at each other).
        sa.Column(${q(s.fks.message_parent)}, ${s.pk_type}, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # History is read per chat in (created_at, id) order: one index serves it.
    ${call("op.create_index", [q(s.names.message_order_index), q(s.message.table), "[" + q(s.fks.message_chat) + ', "created_at", "id"]'])}
    ${call("op.create_index", [q(s.names.message_parent_index), q(s.message.table), "[" + q(s.fks.message_parent) + "]"])}

    op.create_table(
        ${q(s.tool_call.table)},
        sa.Column("id", ${s.pk_type}, primary_key=True),
        sa.Column(
            ${q(s.fks.tool_call_message)},
            ${s.pk_type},
            sa.ForeignKey(${q(s.message.table + ".id")}, ondelete="CASCADE"),
            nullable=False,
        ),
        # The provider's id of the call ("call_abc"): unique within its message only.
        sa.Column("tool_call_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column(
            "arguments",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("thought_signature", sa.Text(), nullable=True),
        # Tool approval: state, the hash of the arguments it is about, who, when, why.
        sa.Column("approval", sa.String(16), nullable=True),
        sa.Column("approval_arguments_hash", sa.String(64), nullable=True),
        sa.Column("approval_decided_by", sa.String(255), nullable=True),
        sa.Column("approval_decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approval_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        ${call("sa.UniqueConstraint", [q(s.fks.tool_call_message), '"tool_call_id"', "name=" + q(s.names.tool_call_unique)], 8, ",")}
    )
    ${call("op.create_index", [q(s.names.tool_call_message_index), q(s.tool_call.table), "[" + q(s.fks.tool_call_message) + "]"])}

    # Batch mode, because SQLite cannot add a constraint to a table: Alembic copies it there.
    with op.batch_alter_table(${q(s.message.table)}) as batch_op:
        batch_op.create_foreign_key(
            ${q(s.names.message_parent_fk)},
            ${q(s.tool_call.table)},
            [${q(s.fks.message_parent)}],
            ["id"],
            ondelete="SET NULL",
        )

    # The chats' event logs: what viewers follow live, in seq order per chat.
    op.create_table(
        ${q(s.event.table)},
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
% if s.attachments:

    # References to files; the bytes live in a storage, never in the database.
    op.create_table(
        ${q(s.attachments.table)},
        sa.Column("id", ${s.pk_type}, primary_key=True),
        sa.Column(
            ${q(s.fks.attachment_message)},
            ${s.pk_type},
            sa.ForeignKey(${q(s.message.table + ".id")}, ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("byte_size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("storage_key", sa.String(1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    ${call("op.create_index", [q(s.names.attachment_message_index), q(s.attachments.table), "[" + q(s.fks.attachment_message) + "]"])}
% endif

${s.usage_table_operations()}


def downgrade() -> None:
    """Drop the chat tables, dependants first."""
    op.drop_table(${q(s.usage.table)})
    op.drop_table(${q(s.event.table)})
% if s.attachments:
    op.drop_table(${q(s.attachments.table)})
% endif
    # Break the messages <-> tool calls cycle before dropping either table.
    with op.batch_alter_table(${q(s.message.table)}) as batch_op:
        ${call("batch_op.drop_constraint", [q(s.names.message_parent_fk), 'type_="foreignkey"'], 8)}
    op.drop_table(${q(s.tool_call.table)})
    op.drop_table(${q(s.message.table)})
    op.drop_table(${q(s.chat.table)})
    op.drop_table(${q(s.model.table)})
