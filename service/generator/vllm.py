"""The vLLM generator: an in-process AsyncLLM engine (CUDA build or the CPU build).

Each candidate is its own engine request (same prompt tokens, its own seed), so
the candidates share the prompt's KV cache through prefix caching and each one
can be aborted on its own.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

from service import metrics, private_apis
from service.config import VLLMGeneratorConfig
from service.embedded import resolve_model_path
from service.errors import BadRequest, Overloaded
from service.generator.race import Prepared, Progress, RacingGenerator
from service.types import Candidate, Prompt, SamplingSpec, TokenLogprob

if TYPE_CHECKING:
    from service.reward.catalog import RewardCatalog

log = logging.getLogger(__name__)

# vLLM's VLLM_MAX_NUM_BAD_WORDS: banned sequences of two tokens or more are checked one by one at
# every step (one-token bans are a logit bias, applied to the batch at once: not counted).
MAX_BANNED_SEQUENCES = 128


class VLLMGenerator(RacingGenerator):
    def __init__(self, config: VLLMGeneratorConfig, judge: RewardCatalog | None = None):
        self.config, self.judge = config, judge
        self.model_name = config.served_model_name
        self.max_model_len = config.max_model_len
        self.engine = None
        self.tokenizer = None

    async def start(self) -> None:
        # Imported here: importing vllm is slow and only the generator replica needs it.
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        # The CPU build sizes its KV cache from this variable (GiB), read by the engine process.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.config.cpu_kv_cache_gib))
        model_path = resolve_model_path(self.config.model)
        args = AsyncEngineArgs(
            model=model_path,
            served_model_name=self.config.served_model_name,
            dtype=self.config.dtype,
            max_model_len=self.config.max_model_len,
            enable_prefix_caching=self.config.enable_prefix_caching,
            gpu_memory_utilization=self.config.gpu_memory_utilization,
            max_num_seqs=self.config.max_num_seqs,
            enforce_eager=self.config.enforce_eager,
            **self.config.engine_args,
        )
        self.engine = AsyncLLM.from_engine_args(args)
        self.tokenizer = self.engine.get_tokenizer()
        self.banned_sequences = functools.lru_cache(maxsize=256)(functools.partial(ban_sequences, self.tokenizer))
        log.info("vLLM engine ready: %s (%s)", self.config.served_model_name, model_path)

    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None

    async def check_ready(self) -> None:
        if self.engine is None or self.engine.errored:
            raise Overloaded("the generator engine is not running", code="engine_unavailable")

    async def detokenize(self, token_ids) -> str:
        await self.check_ready()
        vocabulary = len(self.tokenizer)
        bad = next((t for t in token_ids if not 0 <= t < vocabulary), None)
        if bad is not None:
            raise BadRequest(f"token id {bad} is not in this model's vocabulary (0..{vocabulary - 1})", param="prompt")
        return self.tokenizer.decode(list(token_ids))

    def _token_ids(self, prompt: Prompt) -> list[int]:
        if prompt.token_ids is not None:
            return list(prompt.token_ids)
        if prompt.messages is not None:
            text = self.tokenizer.apply_chat_template(
                [dict(m) for m in prompt.messages], add_generation_prompt=True, tokenize=False
            )
            return self.tokenizer.encode(text, add_special_tokens=False)
        return self.tokenizer.encode(prompt.text)

    def _engine_options(self, sampling: SamplingSpec) -> tuple[dict, list[list[int]] | None]:
        """The request's engine options and its banned token sequences, each ban the cheapest
        way the engine takes it: one-token forms as the lowest logit bias, longer ones as sequences."""
        options = sampling.engine_options()
        banned = self.banned_sequences(tuple(options.pop("bad_words", ())))
        one_token = {ids[0]: -100.0 for ids in banned if len(ids) == 1}
        if one_token:
            # The engine adds biases to the whole batch at once; its bad-words check runs in Python per
            # sequence, request and step: the slop lexicon's 37 one-token forms took 2.6 of its 3.1 ms
            # a step for 8 candidates (apply_bad_words timed alone on the reference machine).
            options["logit_bias"] = options.get("logit_bias", {}) | one_token
        longer = [list(ids) for ids in banned if len(ids) > 1]
        if len(longer) > MAX_BANNED_SEQUENCES:
            raise BadRequest(f"bad_words (with the ban list) make {len(longer)} token sequences of two tokens or "
                             f"more; the engine bans at most {MAX_BANNED_SEQUENCES} (send fewer, or bans: false)",
                             param="bad_words")
        return options, longer or None

    async def prepare(self, prompt: Prompt, sampling: SamplingSpec) -> Prepared:
        await self.check_ready()
        ids = self._token_ids(prompt)
        param = "messages" if prompt.messages is not None else "prompt"
        if len(ids) >= self.max_model_len:
            raise BadRequest(
                f"the prompt is {len(ids)} tokens; this model's context is {self.max_model_len}",
                param=param,
                code="context_length_exceeded",
            )
        if len(ids) + sampling.max_tokens > self.max_model_len:
            raise BadRequest(
                f"prompt ({len(ids)} tokens) plus max_tokens ({sampling.max_tokens}) exceeds "
                f"this model's context of {self.max_model_len}",
                param="max_tokens",
                code="context_length_exceeded",
            )
        engine_options, banned = self._engine_options(sampling)
        return Prepared(prompt, sampling, len(ids), EngineRequest(tuple(ids), uuid.uuid4().hex, engine_options, banned))

    can_branch = True

    async def continuing(self, request: Prepared, text: str, tokens: int) -> Prepared:
        """The prompt's tokens and the prefix's, as one prompt: with prefix caching the
        shared part is not computed again. The prefix is re-encoded from its text, which
        may split a word differently from how it was sampled; the model reads it the same."""
        engine = request.engine
        ids = engine.token_ids + tuple(self.tokenizer.encode(text, add_special_tokens=False))
        sampling = replace(request.sampling, max_tokens=max(1, request.sampling.max_tokens - tokens))
        return replace(request, sampling=sampling, engine=engine._replace(token_ids=ids))

    async def candidate(self, request: Prepared, i: int, progress: Progress) -> Candidate:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        sampling, engine = request.sampling, request.engine
        params = SamplingParams(
            n=1,
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            stop=list(sampling.stop) or None,
            seed=None if sampling.seed is None else sampling.seed + i,
            output_kind=RequestOutputKind.CUMULATIVE,  # partial text is there at the deadline
            **engine.options,  # penalties, top_k, min_p, logit_bias, ...
            logprobs=sampling.logprobs,
            structured_outputs=structured_outputs(sampling),
        )
        private_apis.ban_token_sequences(params, engine.banned)  # see ban_sequences: what bad_words would leave out
        final, queued = None, True
        # The engine names no parameter for a schema its grammar cannot compile. Cancelling
        # this run cancels its engine.generate(), which aborts the request in the engine.
        with self.running_candidate(), engine_validation_as_400("response_format" if sampling.wants_json else None):
            prompt = TokensPrompt(prompt_token_ids=list(engine.token_ids))
            async for out in self.engine.generate(prompt, params, f"{engine.request_id}-{i}"):
                final = out.outputs[0]
                progress.update(i, final.text, len(final.token_ids))
                if queued and out.metrics is not None and out.metrics.scheduled_ts:
                    queued = False
                    metrics.QUEUE_WAIT.observe(progress.queue(i, out.metrics.scheduled_ts - out.metrics.queued_ts))
        return Candidate(i, final.text, final.finish_reason or "stop", len(final.token_ids),
                         prompt_tokens=request.prompt_tokens, logprobs=token_logprobs(final, sampling.logprobs))


class EngineRequest(NamedTuple):
    """What every candidate of a request shares in the engine."""

    token_ids: tuple[int, ...]
    request_id: str  # candidate i's engine request is f"{request_id}-{i}"
    options: dict  # SamplingParams keywords: penalties, top_k, min_p, logit_bias, ...
    banned: list | None  # token sequences the engine must not sample (ban_sequences)


def ban_sequences(tokenizer, words: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """The token sequences that ban each word at the start of a text and after a space.

    vLLM's own `bad_words` keeps a word's after-a-space form only when it has as many
    tokens as the bare form; in SmolLM2's tokenizer " vibrant" is one token and "vibrant"
    three, so 29 of the slop lexicon's 30 words would still be sampled mid-sentence.
    Set as the SamplingParams' token sequences, which the engine bans as it bans bad_words.
    """
    sequences: list[tuple[int, ...]] = []
    for word in words:
        for form in (word.lstrip(), " " + word.lstrip()):
            ids = tuple(tokenizer.encode(form, add_special_tokens=False))
            if ids and ids not in sequences:
                sequences.append(ids)
    return tuple(sequences)


def structured_outputs(sampling: SamplingSpec):
    """vLLM's grammar for a JSON answer: every token sampled keeps the text valid JSON."""
    from vllm.sampling_params import StructuredOutputsParams

    if sampling.json_schema is not None:
        return StructuredOutputsParams(json=json.loads(sampling.json_schema))
    return StructuredOutputsParams(json_object=True) if sampling.json_object else None


def token_logprobs(output, k: int | None) -> tuple[TokenLogprob, ...] | None:
    """vLLM's per-token logprobs (a dict of candidates per place, the sampled one among
    them) as TokenLogprob: the sampled token first, then the k most likely."""
    if k is None or output.logprobs is None:
        return None
    out = []
    for token_id, place in zip(output.token_ids, output.logprobs):
        sampled = place[token_id]
        ranked = sorted(place.values(), key=lambda entry: entry.rank or 0)[:k]
        out.append(TokenLogprob(sampled.decoded_token or "", sampled.logprob,
                                tuple((entry.decoded_token or "", entry.logprob) for entry in ranked)))
    # The end-of-sequence token is a token (it was sampled, it has a log probability) but no
    # text: keep its entry with empty text, so the tokens still join into the answer.
    if out and "".join(e.token for e in out) != output.text and "".join(e.token for e in out[:-1]) == output.text:
        out[-1] = replace(out[-1], token="")
    return tuple(out)


@contextlib.contextmanager
def engine_validation_as_400(unnamed: str | None = None):
    """A request the engine refuses (a logit_bias id past the vocabulary, a JSON schema its
    grammar cannot compile) is the client's to fix: a 400 naming the parameter (`unnamed`
    when the engine names none), not a 500."""
    from vllm.exceptions import VLLMValidationError

    try:
        yield
    except VLLMValidationError as exc:
        raise BadRequest(str(exc).split(" (parameter=")[0], param=exc.parameter or unnamed) from None
