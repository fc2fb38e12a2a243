"""The prompts the benchmarks share, so their figures are comparable.
(loadtests/locustfile.py keeps its own copy: it must run as a lone file.)"""

PROMPTS = [
    "Write one sentence about autumn.",
    "Explain in two sentences why the sky is blue.",
    "Give me a short tip for writing clear emails.",
    "Describe a busy train station in three sentences.",
    "What makes a good cup of coffee? Answer briefly.",
    "Suggest a name for a small bakery and say why.",
    "How do I keep basil alive on a windowsill?",
    "Tell me one surprising fact about octopuses.",
    "Write a two-line poem about the sea.",
    "Explain what a database index is, in plain words.",
    "Give three tips for a first job interview.",
    "Why do cats purr? Keep it short.",
]
