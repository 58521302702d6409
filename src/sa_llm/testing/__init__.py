"""A testing kit for your own test suite: a scripted fake model, recorded-traffic replay and
loopback servers.

* :func:`fake_llm` / :class:`FakeLLM` (:mod:`sa_llm.testing.fake`): the scripted model, provider
  ``"fake"``, through sa_llm's real transport, SSE decoding, retries and tool loop::

      from sa_llm.testing import fake_llm

      with fake_llm() as fake:
          fake.tool_call("weather", {"city": "Berlin"}).reply("It is 15°C in Berlin.")
          chat = sa_llm.chat("fake-model", provider="fake").with_tool(Weather)
          assert chat.ask("Weather in Berlin?").text == "It is 15°C in Berlin."

* :class:`Replay` (:mod:`sa_llm.testing.replay`): an httpx transport serving recorded HTTP
  traffic, matched by method and URL in order.
* :class:`~sa_llm.testing.server.FakeOpenAIServer`: a real OpenAI-compatible server on
  127.0.0.1 with injectable faults, for benchmarks, other libraries and other processes.
* :class:`~sa_llm.testing.faults.FaultInjectingServer`: any provider's recorded replies over
  real HTTP, broken on purpose.
* :mod:`sa_llm.testing.pytest_plugin`: pytest fixtures (``sa_llm_fake``, ``sa_llm_replay``,
  ``sa_llm_session``, ...) for your own suite, loaded through the ``pytest11`` entry point.
"""

from __future__ import annotations

from sa_llm.testing.fake import FakeLLM, FakeProvider, ScriptedReply, fake_llm
from sa_llm.testing.replay import Replay, ReplayedRequest

__all__ = ["FakeLLM", "FakeProvider", "Replay", "ReplayedRequest", "ScriptedReply", "fake_llm"]
