"""What a user would do without prune: vLLM's own OpenAI server, best-of-N on the client.

    python -m loadtests.baseline serve [--config deploy/local.yaml] [--port 8001]
        starts vLLM's OpenAI-compatible server with the engine settings and the
        model of the deploy file (the embedded model included), in the foreground;
    python -m loadtests.baseline ask --url http://127.0.0.1:8001 --best-of 4 "Say something."
        one client-side best-of-N: N concurrent requests (seeds s..s+N-1), the N
        texts scored here with the deploy file's default reward model, best printed.

`client_best_of` is the function loadtests.compare measures against prune.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass

import httpx


@dataclass
class ClientPick:
    text: str
    score: float
    seconds: float
    completion_tokens: int


async def client_best_of(
    client: httpx.AsyncClient, url: str, model: str, reward, messages: list[dict], *, best_of: int, max_tokens: int,
    seed: int, temperature: float = 1.0,
) -> ClientPick:
    """N concurrent chat completions from the server, scored locally, best returned."""
    from service.types import Prompt

    started = time.perf_counter()
    bodies = [
        {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature, "seed": seed + i}
        for i in range(best_of)
    ]
    responses = await asyncio.gather(*(client.post(f"{url}/v1/chat/completions", json=b) for b in bodies))
    for response in responses:
        response.raise_for_status()
    answers = [r.json() for r in responses]
    texts = [a["choices"][0]["message"]["content"] or "" for a in answers]
    scores = await reward.score(Prompt(messages=tuple(messages), max_tokens=max_tokens), texts)
    best = max(range(len(texts)), key=lambda i: (scores.values[i], -i))
    return ClientPick(
        texts[best], float(scores.values[best]), time.perf_counter() - started,
        sum(a["usage"]["completion_tokens"] for a in answers),
    )


async def load_reward(config_path: str, name: str | None = None):
    """The deploy file's reward model (its default unless named), started, in this process."""
    from service.config import load_serve_file
    from service.reward import make_reward_models

    _, config = load_serve_file(config_path)
    models = make_reward_models(config.reward_models)
    for model in models.values():
        await model.start()
    return models[name or config.default_reward_model]


def serve_command(config_path: str, port: int) -> tuple[list[str], dict[str, str]]:
    """vLLM's OpenAI server with the same engine settings as prune's generator."""
    from service.config import VLLMGeneratorConfig, load_serve_file
    from service.embedded import resolve_model_path

    _, config = load_serve_file(config_path)
    gen = config.generator
    if not isinstance(gen, VLLMGeneratorConfig):
        raise SystemExit(f"{config_path}: the generator is not vLLM")
    # `python -m` rather than the `vllm` console script, which the CPU build's wheel breaks.
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1", "--port", str(port),
        "--model", resolve_model_path(gen.model), "--served-model-name", gen.served_model_name,
        "--dtype", gen.dtype, "--max-model-len", str(gen.max_model_len), "--max-num-seqs", str(gen.max_num_seqs),
        "--gpu-memory-utilization", str(gen.gpu_memory_utilization), "--disable-uvicorn-access-log",
    ]
    command += ["--enable-prefix-caching"] if gen.enable_prefix_caching else ["--no-enable-prefix-caching"]
    if gen.enforce_eager:
        command.append("--enforce-eager")
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=str(gen.cpu_kv_cache_gib))
    return command, env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    serve = sub.add_parser("serve", help="start vLLM's OpenAI server like prune's generator")
    serve.add_argument("--config", default="deploy/local.yaml")
    serve.add_argument("--port", type=int, default=8001)
    ask = sub.add_parser("ask", help="one client-side best-of-N")
    ask.add_argument("prompt")
    ask.add_argument("--url", default="http://127.0.0.1:8001")
    ask.add_argument("--config", default="deploy/local.yaml")
    ask.add_argument("--model", default="smollm2-135m-instruct")
    ask.add_argument("--best-of", type=int, default=4)
    ask.add_argument("--max-tokens", type=int, default=64)
    ask.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.action == "serve":
        command, env = serve_command(args.config, args.port)
        os.execvpe(command[0], command, env)

    async def one():
        reward = await load_reward(args.config)
        async with httpx.AsyncClient(timeout=600) as client:
            return await client_best_of(client, args.url, args.model, reward,
                                        [{"role": "user", "content": args.prompt}], best_of=args.best_of,
                                        max_tokens=args.max_tokens, seed=args.seed)

    pick = asyncio.run(one())
    print(f"{pick.text}\n(score {pick.score:.3f}, {pick.seconds:.2f} s, {pick.completion_tokens} tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
