"""Pure: the container of a requirements build and its cache key."""

from __future__ import annotations

from taskdash.core.config import load_settings
from taskdash.engine.build_spec import build_spec, pip_command, requirements_key
from taskdash.engine.spec import container_config


def test_build_spec_may_use_the_network_but_not_more() -> None:
    settings = load_settings(data_dir="/tmp/x", build_network="bridge", pip_no_index=True)
    config = container_config(build_spec(settings, image="img", labels={}))
    assert config["HostConfig"]["NetworkMode"] == "bridge"
    assert config["HostConfig"]["CapAdd"] == ["CHOWN", "DAC_OVERRIDE", "FOWNER"]
    assert "--no-index" in config["Cmd"]


def test_requirements_key_ignores_order_comments_and_blank_lines() -> None:
    assert requirements_key("img", "b\na\n") == requirements_key("img", "# x\na\n\nb")
    assert requirements_key("img", "a") != requirements_key("other", "a")
    assert requirements_key("img", "a==1") != requirements_key("img", "a==2")


def test_pip_command_uses_the_configured_sources(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(
        data_dir="/tmp/x",
        pip_index_url="https://mirror/simple",
        pip_extra_index_url="https://extra/simple",
        pip_find_links=str(tmp_path),
    )
    command = " ".join(pip_command(settings))
    assert "--index-url https://mirror/simple" in command
    assert "--extra-index-url https://extra/simple" in command
    assert "--find-links /wheels" in command
