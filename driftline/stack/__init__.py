"""The local stack on loopback: Prometheus, Pushgateway and Alertmanager from the binaries on
PATH, the receiver of Alertmanager's notifications, the Prefect server and the warm runner
(driftline.stack.runner), each from the project's environment.

`driftline.stack.configs` renders their configs from infra/; `driftline.stack.control` starts,
stops and reports the processes. The names below are the stack's public face.
"""

from driftline.stack.alerts import main as alerts_main
from driftline.stack.configs import (
    BINARIES,
    COMPONENTS,
    INFRA_DIR,
    LOCAL_STACK,
    Component,
    MissingBinaryError,
    RenderedConfigs,
    StackConfig,
    StackError,
    command_line,
    default_state_dir,
    find_binary,
    render,
    render_alertmanager_config,
    render_prometheus_config,
    render_rules,
)
from driftline.stack.control import (
    ComponentStatus,
    down,
    format_status,
    main,
    prefect_api_url,
    status,
    up,
)
