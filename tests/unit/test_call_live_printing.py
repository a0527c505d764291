"""`voice-agent call` prints the agent's words as the live feed brings them, not only at the end."""

from __future__ import annotations

import pytest

from local.commands import _LivePrinter


def test_agent_words_are_printed_as_they_arrive(capsys: pytest.CaptureFixture[str]) -> None:
    printer = _LivePrinter()
    greeting = {"role": "agent", "text": "Thanks for calling.", "interrupted": False}
    printer.show({"events": [], "transcript": [greeting]})
    assert capsys.readouterr().out == "  agent: Thanks for calling.\n"  # said without the agent runtime

    caller = {"role": "caller", "text": "what are your hours", "interrupted": False}
    printer.show({"events": [], "transcript": [greeting, caller]})
    assert capsys.readouterr().out == "  heard: what are your hours\n"

    printer.show({"events": [{"kind": "agent_words", "text": "We're open "}], "transcript": [greeting, caller]})
    assert capsys.readouterr().out == "  agent: We're open "  # before the reply is finished
    printer.show({"events": [{"kind": "tool_call", "name": "business_info", "arguments": "{}"},
                             {"kind": "agent_words", "text": "nine to six."}], "transcript": [greeting, caller]})
    assert capsys.readouterr().out == "\n   tool → business_info: {}\n  agent: nine to six."

    reply = {"role": "agent", "text": "We're open nine to six.", "interrupted": True, "heard": "We're open"}
    printer.show({"events": [], "transcript": [greeting, caller, reply]})
    assert capsys.readouterr().out == "\n  [agent cut off; the caller heard: \"We're open\"]\n"
