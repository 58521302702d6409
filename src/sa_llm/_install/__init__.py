"""``sa-llm install`` and ``sa-llm upgrade``: the models module and the Alembic revisions.

The templates live in ``sa_llm/alembic_templates`` (see its README) and are rendered with
Alembic's own machinery: :meth:`alembic.script.ScriptDirectory.generate_revision` writes a
revision into the project's versions directory, named by the project's ``file_template``, with
``down_revision`` = the current head(s) and the project's post-write hooks run on it;
:func:`alembic.util.template_to_file` renders the environment and the models module.

Mappings rename the classes as the Rails generators do (``chat:Conversation``,
``message:ChatMessage``, ``tool_call:FunctionCall``, ``model:AIModel``); a dotted value
(``chat:llm.Chat``) is namespaced: the class is ``Chat``, its table ``llm_chats`` and its
associations ``llm_chat``/``llm_chats``. Table names are the underscored, pluralised class names;
foreign keys are ``<association>_id``; the decorators get only the options their own inference
would not find.

Example::

    result = install(mappings=["chat:Conversation"], module_path=Path("models.py"))
    print("\\n".join(result.messages))
"""

from __future__ import annotations

from sa_llm._install.chat_ui import chat_ui
from sa_llm._install.commands import install, upgrade
from sa_llm._install.project import InstallResult
from sa_llm._install.schema import (
    SCHEMA_VERSION,
    Role,
    Schema,
    call,
    literal,
    parse_mappings,
    pluralize,
)

__all__ = [
    "SCHEMA_VERSION",
    "InstallResult",
    "Role",
    "Schema",
    "call",
    "chat_ui",
    "install",
    "literal",
    "parse_mappings",
    "pluralize",
    "upgrade",
]
