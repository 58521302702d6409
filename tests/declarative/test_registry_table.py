"""The registry table: idempotent loading, SQL capability filters, refresh from provider lists."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

import sa_llm
from persisted import default_models
from sa_llm import registry
from sa_llm.cli import main
from sa_llm.registry_table import import_model_class, load_models


def test_load_models_is_idempotent_and_filters_in_sql(db_url: str) -> None:
    m = default_models()
    engine = create_engine(db_url)
    m["Base"].metadata.create_all(engine)
    Model = m["Model"]
    try:
        with Session(engine) as session:
            assert load_models(session, Model) == len(registry.all())
            session.commit()
            ids = select(Model.model_id, Model.id)
            first_ids: dict[str, int] = dict(session.execute(ids).all())
            assert load_models(session, Model) == len(registry.all())  # again: no duplicates
            session.commit()
            assert dict(session.execute(ids).all()) == first_ids
            for flag in ("supports_vision", "supports_functions", "supports_reasoning"):
                in_sql = set(
                    session.execute(
                        select(Model.provider, Model.model_id).where(getattr(Model, flag))
                    ).all()
                )
                in_memory = {(i.provider, i.id) for i in registry.all() if getattr(i, flag)}
                assert in_sql == in_memory, flag
            row = session.scalars(select(Model).where(Model.model_id == "gpt-4.1-nano")).one()
            assert row.supports_vision and row.supports_functions
            assert row.to_llm().context_window == registry.find("gpt-4.1-nano").context_window
    finally:
        engine.dispose()


def test_chats_use_rows_loaded_by_load_models(db_url: str) -> None:
    m = default_models()
    engine = create_engine(db_url)
    m["Base"].metadata.create_all(engine)
    try:
        with Session(engine) as session:
            load_models(session, m["Model"])
            session.commit()
            before = session.scalar(select(func.count()).select_from(m["Model"]))
            chat = m["Chat"](model="gpt-4.1-nano")
            session.add(chat)
            session.commit()
            assert session.scalar(select(func.count()).select_from(m["Model"])) == before
            assert chat.model.model_id == "gpt-4.1-nano"
    finally:
        engine.dispose()


@pytest.fixture
def restore_registry() -> Iterator[None]:
    """refresh() changes the process-wide registry: put it back for the other tests."""
    before = registry.all()
    yield
    registry.default_registry.replace_all(before)


@pytest.mark.usefixtures("restore_registry")
def test_refresh_merges_listed_models_and_keeps_facts() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/models")
        assert request.headers["authorization"] == "Bearer test-key"
        listing = [{"id": "gpt-4.1-nano", "created": 1}, {"id": "gpt-refresh-test", "created": 2}]
        return httpx.Response(200, json={"data": listing})

    ctx = sa_llm.context(
        openai_api_key="test-key",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )
    known = registry.find("gpt-4.1-nano")
    report = registry.refresh(ctx.config, providers=["openai", "deepseek"])
    assert report["openai"] == "2 listed, 1 new"
    assert report["deepseek"].startswith("skipped") or "kept" in report["deepseek"]
    assert registry.find("gpt-refresh-test", "openai").created_at is not None
    assert registry.find("gpt-4.1-nano") == known


@pytest.mark.usefixtures("restore_registry")
def test_refresh_keeps_entries_when_a_provider_fails() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "down"}})

    ctx = sa_llm.context(
        openai_api_key="test-key",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )
    count = len(registry.by_provider("openai"))
    report = registry.refresh(ctx.config, providers=["openai"])
    assert "ServerError" in report["openai"]
    assert len(registry.by_provider("openai")) == count


def _paged(pages: list[dict[str, object]], seen: list[httpx.Request]) -> httpx.Client:
    """A client whose model listing answers ``pages`` in order."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=pages[min(len(seen), len(pages)) - 1])

    return httpx.Client(transport=httpx.MockTransport(handler))


@pytest.mark.usefixtures("restore_registry")
def test_refresh_follows_anthropic_pages() -> None:
    seen: list[httpx.Request] = []
    pages: list[dict[str, object]] = [
        {
            "data": [{"id": "claude-page-one", "display_name": "One"}],
            "has_more": True,
            "last_id": "claude-page-one",
        },
        {
            "data": [{"id": "claude-page-two", "display_name": "Two"}],
            "has_more": False,
            "last_id": "claude-page-two",
        },
    ]
    ctx = sa_llm.context(anthropic_api_key="k", http_client=_paged(pages, seen), max_retries=0)
    report = registry.refresh(ctx.config, providers=["anthropic"])
    assert report["anthropic"] == "2 listed, 2 new"
    assert dict(seen[1].url.params) == {"limit": "1000", "after_id": "claude-page-one"}
    assert registry.find("claude-page-two", "anthropic").name == "Two"


@pytest.mark.usefixtures("restore_registry")
def test_refresh_follows_gemini_page_tokens() -> None:
    seen: list[httpx.Request] = []
    pages: list[dict[str, object]] = [
        {"models": [{"name": "models/gemini-page-one"}], "nextPageToken": "t1"},
        {"models": [{"name": "models/gemini-page-two"}]},
    ]
    ctx = sa_llm.context(gemini_api_key="k", http_client=_paged(pages, seen), max_retries=0)
    report = registry.refresh(ctx.config, providers=["gemini"])
    assert report["gemini"] == "2 listed, 2 new"
    assert seen[1].url.params["pageToken"] == "t1"
    assert registry.find("gemini-page-two", "gemini").provider == "gemini"


@pytest.mark.usefixtures("restore_registry")
def test_a_listing_that_repeats_its_page_stops_and_keeps_the_entries() -> None:
    seen: list[httpx.Request] = []
    page: dict[str, object] = {"models": [{"name": "models/gemini-loop"}], "nextPageToken": "same"}
    ctx = sa_llm.context(gemini_api_key="k", http_client=_paged([page], seen), max_retries=0)
    count = len(registry.by_provider("gemini"))
    report = registry.refresh(ctx.config, providers=["gemini"])
    assert "ResponseParseError" in report["gemini"] and "same page" in report["gemini"]
    assert len(seen) == 2
    assert len(registry.by_provider("gemini")) == count


def test_cli_models_list_and_load(tmp_path: Path, db_url: str) -> None:
    runner = CliRunner()
    listed = runner.invoke(
        main, ["models", "list", "--provider", "openai", "--capability", "vision"]
    )
    assert listed.exit_code == 0, listed.output
    assert "gpt-4.1-nano" in listed.output
    assert f"{len(registry.where(provider='openai', supports_vision=True))} models" in listed.output

    module = tmp_path / "app_models.py"
    module.write_text(
        "from sqlalchemy.orm import DeclarativeBase\n"
        "from sa_llm.declarative import acts_as_model\n"
        "from sa_llm.mixins import ModelMixin\n\n"
        "class Base(DeclarativeBase):\n    pass\n\n"
        "@acts_as_model()\n"
        "class Model(ModelMixin, Base):\n    __tablename__ = 'models'\n"
    )
    engine = create_engine(db_url)
    import_model_class(module, "Model").metadata.create_all(engine)
    engine.dispose()
    for _ in range(2):
        loaded = runner.invoke(
            main, ["models", "load", "--database-url", db_url, "--module", str(module)]
        )
        assert loaded.exit_code == 0, loaded.output
        assert f"{len(registry.all())} models in models" in loaded.output


def test_cli_database_errors_are_one_line(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from sqlalchemy.orm import DeclarativeBase\n"
        "from sa_llm.declarative import acts_as_model\n"
        "from sa_llm.mixins import ModelMixin\n"
        "class Base(DeclarativeBase):\n    pass\n"
        "@acts_as_model()\n"
        "class Model(ModelMixin, Base):\n    __tablename__ = 'models'\n"
    )
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite3'}"
    result = CliRunner().invoke(
        main, ["models", "load", "--database-url", url, "--module", str(module)]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    assert "Traceback" not in result.output


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["models", "load", "--database-url", "sqlite://", "--module", str(tmp_path / "x.py")]
    )
    assert result.exit_code != 0
    assert "No models module" in result.output
    assert "Traceback" not in result.output
