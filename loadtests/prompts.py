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

# For the commit-point calibration and the stream benchmark: the prompts above and
# more of the kinds people send a writing model, short answers and long ones.
CALIBRATION_PROMPTS = PROMPTS + [
    "Tell a long story about a ship.",
    "Write a short product description for a steel water bottle.",
    "Draft a polite email asking a landlord to fix a leaking tap.",
    "Summarise the plot of a heist story you invent, in one paragraph.",
    "Explain how a bicycle gear works to a ten-year-old.",
    "Write a four-line poem about city rain at night.",
    "What is the difference between weather and climate?",
    "Give me advice for my first week learning to run.",
    "Describe the smell of a bakery at six in the morning.",
    "Write the opening paragraph of a mystery set in a lighthouse.",
    "How should I prepare for a long flight?",
    "Explain compound interest with a simple example.",
    "Argue for or against homework in primary school, briefly.",
    "Write a thank-you note to a neighbour who watered my plants.",
    "Describe a mountain village in winter.",
    "How do vaccines train the immune system? Keep it simple.",
    "Write a short scene where two old friends meet by chance.",
    "Give three ways to make a small kitchen feel bigger.",
    "What should I look for when buying a used car?",
    "Explain why bread rises.",
    "Write a short motivational message for a team before a deadline.",
    "Describe the sound of a forest after a storm.",
    "How do I apologise to a friend I let down?",
    "Explain what an API is to someone who does not code.",
    "Write a limerick about a forgetful cat.",
    "Give me a recipe idea for a quick vegetarian dinner.",
    "Tell a story about a robot learning to paint.",
    "What are the pros and cons of working from home?",
    "Describe your ideal Sunday morning.",
    "Explain how a lighthouse keeper's job changed over a century.",
]
