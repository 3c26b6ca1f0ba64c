"""Drives the gateway with the official OpenAI Python SDK, as a developer would.

Usage: python3 openai_sdk_check.py BASE_URL GOOD_KEY LIMITED_KEY
(LIMITED_KEY is allowed one request per minute.)
Exits non-zero (with the failing check) if anything is off.
"""
import sys

import openai

base_url, key, limited_key = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
messages = [{"role": "user", "content": "Hi"}]

# Non-streaming, with an OpenRouter-only field through extra_body.
completion = client.chat.completions.create(
    model="openai/gpt-4o", messages=messages, extra_body={"provider": {"sort": "price"}}
)
assert completion.choices[0].message.content == "Hello there!", completion
assert completion.usage.total_tokens == 14, completion.usage
# Unknown response fields survive (pydantic extra="allow").
assert completion.model_extra.get("provider") == "OpenAI", completion.model_extra

# Streaming: comments are skipped, the usage chunk (choices: []) arrives.
text, usage = "", None
for chunk in client.chat.completions.create(model="openai/gpt-4o", messages=messages, stream=True):
    for choice in chunk.choices:
        text += choice.delta.content or ""
    usage = usage or chunk.usage
assert text == "tok0 tok1 ", text
assert usage is not None and usage.total_tokens == 12, usage

# A broken stream surfaces as an APIError, not as silence.
try:
    for _ in client.chat.completions.create(
        model="openai/gpt-4o", messages=messages, stream=True, extra_headers={"x-mock": "stream-cut"}
    ):
        pass
    raise AssertionError("a cut stream must raise")
except openai.APIError as e:
    assert "stream interrupted" in str(e), e

# Gateway errors map to the SDK's exception classes.
bad = openai.OpenAI(base_url=base_url, api_key="sk-orgate-wrong", max_retries=0)
try:
    bad.chat.completions.create(model="openai/gpt-4o", messages=messages)
    raise AssertionError("a wrong key must be refused")
except openai.AuthenticationError as e:
    assert e.status_code == 401 and "invalid API key" in str(e), e

# The upstream's own rate limit reaches the SDK as a RateLimitError.
try:
    client.chat.completions.create(model="openai/gpt-4o", messages=messages, extra_headers={"x-mock": "status-429"})
    raise AssertionError("429 must raise")
except openai.RateLimitError as e:
    assert e.response.headers.get("retry-after") == "7", e.response.headers

# The gateway's own rate limit: the second request of a one-a-minute key.
limited = openai.OpenAI(base_url=base_url, api_key=limited_key, max_retries=0)
limited.chat.completions.create(model="openai/gpt-4o", messages=messages)
try:
    limited.chat.completions.create(model="openai/gpt-4o", messages=messages)
    raise AssertionError("the second request must be refused")
except openai.RateLimitError as e:
    assert int(e.response.headers["retry-after"]) >= 1, e.response.headers
    assert e.response.headers["x-ratelimit-remaining-requests"] == "0", e.response.headers
    assert "rate limit exceeded" in str(e), e

# The Responses API (Codex, the OpenAI Agents SDK): JSON, then a stream.
response = client.responses.create(model="openai/gpt-4o", input="Hi")
assert response.output_text == "Hello there!", response
assert response.usage.total_tokens == 14, response.usage
text, completed = "", None
for event in client.responses.create(model="openai/gpt-4o", input="Hi", stream=True):
    if event.type == "response.output_text.delta":
        text += event.delta
    elif event.type == "response.completed":
        completed = event.response
assert text == "tok0 tok1 ", text
assert completed is not None and completed.usage.total_tokens == 12, completed

# A Responses stream cut before its terminal event ends in the API's own error event, which the
# SDK either raises or hands over as an `error` event: never a silent end.
saw_error = False
try:
    for event in client.responses.create(
        model="openai/gpt-4o", input="Hi", stream=True, extra_headers={"x-mock": "stream-cut"}
    ):
        assert event.type != "response.completed", event
        saw_error = saw_error or event.type == "error"
except openai.APIConnectionError:
    raise  # the gateway's error event ends the stream cleanly
except openai.APIError:
    saw_error = True
assert saw_error, "a cut Responses stream must end in an error"

models = client.models.list()
assert models.data[0].id == "openai/gpt-4o", models
print("openai-python", openai.__version__, "OK")
