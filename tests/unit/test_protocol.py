"""Request models: what OpenAI clients send is accepted, nonsense is named."""

import pytest
from pydantic import ValidationError

from service.protocol import ChatCompletionRequest, CompletionRequest


def test_a_one_element_prompt_list_is_a_prompt():
    assert CompletionRequest(model="m", prompt=["hi"]).to_prompt().text == "hi"


def test_several_prompts_are_a_batch_of_requests_and_mixed_ones_are_refused():
    batch = CompletionRequest(model="m", prompt=["a", "b"], best_of=3).batch()
    assert [r.to_prompt().text for r in batch] == ["a", "b"] and {r.best_of for r in batch} == {3}
    assert [r.to_prompt().token_ids for r in CompletionRequest(model="m", prompt=[[1, 2], [3]]).batch()] == [(1, 2), (3,)]
    with pytest.raises(ValidationError, match="all strings or all token-id lists"):
        CompletionRequest(model="m", prompt=["a", [1]])


def test_stop_accepts_a_string_or_up_to_four():
    assert CompletionRequest(model="m", prompt="p", stop="\n").sampling(8).stop == ("\n",)
    with pytest.raises(ValidationError):
        CompletionRequest(model="m", prompt="p", stop=["a", "b", "c", "d", "e"])


def test_fields_openai_does_not_define_are_ignored_and_its_penalties_are_honoured():
    req = CompletionRequest(model="m", prompt="p", some_future_field=2, presence_penalty=0.5, logit_bias={"1": 2})
    assert req.sampling(8).engine_options() == {"presence_penalty": 0.5, "logit_bias": {1: 2}}


def test_chat_text_parts_are_joined_and_developer_is_system():
    req = ChatCompletionRequest(
        model="m",
        messages=[
            {"role": "developer", "content": "Be terse."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
        ],
    )
    prompt = req.to_prompt()
    assert prompt.messages == ({"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi there"})
    assert prompt.last_user_text() == "Hi there"


def test_chat_image_parts_are_rejected():
    with pytest.raises(ValidationError, match="image_url"):
        ChatCompletionRequest(model="m", messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])


def test_max_tokens_with_max_completion_tokens_is_refused_as_openai_refuses_it():
    from service.errors import BadRequest

    def asked(**limits):
        return ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "x"}], **limits)

    assert asked(max_completion_tokens=9).requested_max_tokens() == 9
    assert asked(max_tokens=5).requested_max_tokens() == 5  # deprecated by OpenAI for chat, still taken
    with pytest.raises(BadRequest) as refused:
        asked(max_tokens=5, max_completion_tokens=9).requested_max_tokens()
    assert (refused.value.param, refused.value.code) == ("max_tokens", "invalid_parameter_combination")
