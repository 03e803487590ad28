"""``centrality agent join`` and ``centrality agent run``."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from pathlib import Path

import msgspec

from centrality_core import __version__, endpoints, joinstring, names, sshlink
from centrality_core.errors import ConfigError

from . import config as agent_config
from .link import Agent
from .sampler import Sampler

log = logging.getLogger("centrality.agent")


def join(join_string: str, *, name: str | None, config_dir: Path | None,
         labels: dict[str, str] | None = None) -> tuple[Path, agent_config.AgentConfig]:
    """Write the agent's config and generate its key. The key never leaves this machine.

    ``labels``, when given, replace the labels in the config (provisioning sets them).
    """
    js = joinstring.decode(join_string)
    config_dir = config_dir or agent_config.default_dir()
    if name is not None:
        names.check(name)
    key_path = config_dir / agent_config.KEY_FILE
    if not key_path.exists():
        sshlink.generate_key(key_path)
    old = agent_config.AgentConfig()
    if (config_dir / agent_config.CONFIG_FILE).exists():
        old = agent_config.load(config_dir)
    cfg = msgspec.structs.replace(old, address=endpoints.join(js.addresses),
                                  fingerprint=endpoints.join(js.fingerprints), name=name or old.name,
                                  join_token=js.t, labels=old.labels if labels is None else dict(labels))
    agent_config.save(config_dir, cfg)
    return config_dir, cfg


def build_agent(config_dir: Path, *, profile: str | None = None, index: int = 0,
                seed: int = 0, collectors=None) -> Agent:
    """An ``Agent`` for the config in ``config_dir`` with its collectors."""
    from .collectors import make_collectors

    cfg = agent_config.load(config_dir)
    key = sshlink.load_private_key(config_dir / agent_config.KEY_FILE)
    collectors = collectors or make_collectors(profile or cfg.profile, index=index, seed=seed)
    info = collectors.machine_info()
    info["agent_version"] = __version__
    name = cfg.name or names.from_hostname(info.get("hostname") or socket.gethostname())
    if not names.is_valid(name):
        raise ConfigError(f"{config_dir / agent_config.CONFIG_FILE}: invalid name {name!r}: "
                          f"a name is {names.NAME_RULE}")
    sampler = Sampler(collectors, cfg.sample_interval, blocking=(profile or cfg.profile) == "real")
    return Agent(cfg, key, info=info, name=name, sampler=sampler, config_dir=config_dir,
                 probe_gpus=(profile or cfg.profile) == "real")


async def run(config_dir: Path) -> None:
    """Run the agent until SIGINT/SIGTERM; raises CentralityError on a fatal refusal."""
    agent = build_agent(config_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("agent %s connecting to %s", agent.name, agent.cfg.address)
    try:
        await agent.run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
