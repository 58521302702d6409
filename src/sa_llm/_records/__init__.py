"""The ORM surface behind the ``@acts_as_*`` decorators: options, mixins and record methods."""

from __future__ import annotations
