"""The whole service configuration as typed pydantic models, a module per owner:
`base` (strict models, ConfigError), `generators`, `rewards`, `limits` (caps, pruning,
streams), `bans`, `admission`, `callers`, `deployments` (Ray Serve options) and
`service` (the whole `args`, and reading deploy/*.yaml).

The YAML files in deploy/ are Ray Serve config files; our settings are the
`args` of the prune application. `parse_config(args)` checks them once, at start,
and a bad value stops the start with an error naming the field.
"""

from service.config.base import (  # noqa: F401
    cache_dir,
    ConfigError,
    Strict,
)
from service.config.generators import (  # noqa: F401
    FakeGeneratorConfig,
    GeneratorConfig,
    OpenAIGeneratorConfig,
    VLLMGeneratorConfig,
)
from service.config.rewards import (  # noqa: F401
    check_reward_models,
    default_reward_models,
    EmbeddingHeadRewardConfig,
    EnsembleMember,
    EnsembleRewardConfig,
    FakeRewardConfig,
    PartialOffsetsConfig,
    RemoteRewardConfig,
    RewardConfig,
    RewardsConfig,
    SequenceClassifierRewardConfig,
    SlopRewardConfig,
    STYLE_MEMBERS,
)
from service.config.limits import (  # noqa: F401
    Limits,
    BranchRuleConfig,
    ConfidenceRuleConfig,
    NoiseConfig,
    PruningConfig,
    StreamingConfig,
)
from service.config.bans import (  # noqa: F401
    BanListConfig,
    MAX_BAD_WORDS,
)
from service.config.admission import (  # noqa: F401
    AdmissionConfig,
)
from service.config.callers import (  # noqa: F401
    CallerConfig,
    check_callers,
)
from service.config.deployments import (  # noqa: F401
    AutoscalingConfig,
    DeploymentConfig,
    IngressConfig,
    RAY_METRICS_INTERVAL_S,
    ScorerConfig,
)
from service.config.service import (  # noqa: F401
    check_exposure,
    is_loopback,
    load_serve_file,
    parse_config,
    parse_rewards,
    ServeFile,
    ServiceConfig,
    TracingConfig,
)
