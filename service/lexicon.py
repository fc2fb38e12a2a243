"""The slop lexicon's single-word tells banned at the source: plain data, read by the
ban lists in the config and by the slop reward (service.reward.slop) alike."""

# The single-word tells banned at the source by a `lexicon: slop` ban list (service.config.BanListConfig).
# The engine bans at most 128 token sequences per request, each word twice (with and without a leading
# space), and the ban list adds each word capitalised: 30 words leave room for a request's own. Chosen
# from slop.SLOP_PHRASES by what models reach for: `python -m loadtests.mine_tells` on the embedded SmolLM2
# (320 candidates, docs/perf/tells_smollm2.csv) found vibrant, nestled, bustling, intricate, testament,
# remarkable and additionally the commonest, so nestled, remarkable, ultimately and additionally took
# the places of four it never used (synergy, holistic, plethora, leveraging).
BAN_WORDS = [
    "delve", "delves", "delving", "tapestry", "testament", "realm", "embark", "unleash", "elevate", "seamless",
    "seamlessly", "robust", "leverage", "nestled", "pivotal", "multifaceted", "intricate", "showcasing",
    "underscores", "fostering", "resonate", "vibrant", "bustling", "myriad", "remarkable", "ultimately",
    "additionally", "paradigm", "transformative", "meticulous",
]
