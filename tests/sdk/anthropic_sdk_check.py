"""Drives the gateway with the official Anthropic Python SDK, as Claude Code's requests would.

Usage: python3 anthropic_sdk_check.py BASE_URL GOOD_KEY
(BASE_URL is the gateway's root: the SDK appends /v1/messages and sends the key as x-api-key.
The gateway's policy denies "*:free" models.)
Exits non-zero (with the failing check) if anything is off.
"""
import sys

import anthropic

base_url, key = sys.argv[1], sys.argv[2]
client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0)
model = "anthropic/claude-sonnet-4"
messages = [{"role": "user", "content": "Hi"}]

# Non-streaming.
message = client.messages.create(model=model, max_tokens=1024, messages=messages)
assert message.content[0].text == "Hello there!", message
assert (message.usage.input_tokens, message.usage.output_tokens) == (10, 4), message.usage

# Streaming: the text as it comes, and the final message with its usage.
with client.messages.stream(model=model, max_tokens=1024, messages=messages) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
assert text == "tok0 tok1 ", text
assert (final.usage.input_tokens, final.usage.output_tokens) == (10, 2), final.usage
assert final.stop_reason == "end_turn", final

# A stream cut before message_stop surfaces as an error, not as silence.
try:
    with client.messages.stream(
        model=model, max_tokens=1024, messages=messages, extra_headers={"x-mock": "stream-cut"}
    ) as stream:
        for _ in stream:
            pass
    raise AssertionError("a cut stream must raise")
except anthropic.APIError as e:
    assert not isinstance(e, anthropic.APIConnectionError), f"the gateway's error event: {e!r}"

# count_tokens is answered by the gateway.
counted = client.messages.count_tokens(model=model, messages=messages)
assert counted.input_tokens > 0, counted

# The gateway's refusals map to the SDK's exception classes.
try:
    client.messages.create(model="x/y:free", max_tokens=16, messages=messages)
    raise AssertionError("a denied model must be refused")
except anthropic.PermissionDeniedError as e:
    assert e.status_code == 403 and "policy.models.deny" in str(e), e

bad = anthropic.Anthropic(base_url=base_url, api_key="sk-orgate-wrong", max_retries=0)
try:
    bad.messages.create(model=model, max_tokens=16, messages=messages)
    raise AssertionError("a wrong key must be refused")
except anthropic.AuthenticationError as e:
    assert e.status_code == 401, e
print("anthropic-python", anthropic.__version__, "OK")
